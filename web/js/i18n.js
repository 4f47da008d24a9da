// Languages of the Samtal pages (meeting, transcript archive, Matrix widget): the message catalogues
// (web/i18n/<language>.json, one flat object of keys per language), the choice of language, the
// translation of marked elements and of strings built in JS, and dates and times in the chosen locale.
//
// The language is, in this order: the one chosen with a page's language switch (kept in localStorage),
// the `lang` URL parameter (the Matrix widget also reads Element's client language), the browser's
// languages (navigator.languages), English. English is the fallback for a key a catalogue lacks.
//
// Elements name their messages in attributes: data-i18n (text content; only on elements without child
// elements), data-i18n-aria-label, data-i18n-title, data-i18n-placeholder; each may have its
// parameters as JSON in the same attribute name ending in -args. A message may hold {name}
// placeholders; a message that is an object of plural forms ({"one": …, "other": …}) is chosen by
// the `count` parameter (Intl.PluralRules). A select marked data-language-switch switches language.

/** The languages there are catalogues for, each named in itself (for the switch). */
export const LANGUAGES = Object.freeze({ en: 'English', sv: 'Svenska' });
export const DEFAULT_LANGUAGE = 'en';
const STORAGE_KEY = 'samtal.lang';
/** Attributes translated by translate(): [data attribute, what it sets (null: the text)]. */
const ATTRIBUTES = [
  ['data-i18n', null],
  ['data-i18n-aria-label', 'aria-label'],
  ['data-i18n-title', 'title'],
  ['data-i18n-placeholder', 'placeholder'],
];

const catalogues = new Map(); // language -> {key: message}
let current = DEFAULT_LANGUAGE;

/** Fires `change` ({detail: {lang}}) after the language changed and the marked elements were translated. */
export const events = new EventTarget();

/** The supported language of a BCP 47 tag ('sv-SE' -> 'sv'), or null. */
export function supported(tag) {
  if (typeof tag !== 'string') return null;
  const primary = tag.trim().toLowerCase().split(/[-_]/)[0];
  return Object.hasOwn(LANGUAGES, primary) ? primary : null;
}

/** The language to use: the saved choice, else the URL parameter, else the first supported preference. */
export function chooseLanguage({ stored = null, param = null, preferred = [] } = {}) {
  for (const candidate of [stored, param, ...(preferred || [])]) {
    const lang = supported(candidate);
    if (lang) return lang;
  }
  return DEFAULT_LANGUAGE;
}

function storedChoice() {
  try {
    return localStorage.getItem(STORAGE_KEY);
  } catch {
    return null; // storage may be off
  }
}

async function load(lang) {
  if (catalogues.has(lang)) return catalogues.get(lang);
  let messages = {};
  try {
    const r = await fetch(new URL(`../i18n/${lang}.json`, import.meta.url), { cache: 'no-cache' });
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    messages = await r.json();
  } catch (e) {
    console.warn(`samtal: no message catalogue for ${lang}`, e);
  }
  catalogues.set(lang, messages);
  return messages;
}

/** The current language ('en', 'sv'). */
export function language() {
  return current;
}

/** The locale for Intl: the browser's preferred variant of the current language (sv-SE, en-GB), else the language. */
export function locale() {
  const prefs = (typeof navigator !== 'undefined' && navigator.languages) || [];
  return prefs.find((tag) => supported(tag) === current) || current;
}

function lookup(key) {
  const mine = catalogues.get(current);
  if (mine && Object.hasOwn(mine, key)) return mine[key];
  const fallback = catalogues.get(DEFAULT_LANGUAGE);
  if (fallback && Object.hasOwn(fallback, key)) return fallback[key];
  return null;
}

/** The message `key` in the current language with {placeholders} filled from `params`. */
export function t(key, params = {}) {
  let message = lookup(key);
  if (message === null) return key;
  if (typeof message === 'object') {
    const count = Number(params.count);
    let form = 'other';
    try {
      form = new Intl.PluralRules(locale()).select(count);
    } catch { /* an odd count: other */ }
    message = message[form] ?? message.other ?? '';
  }
  return String(message).replace(/\{(\w+)\}/g, (whole, name) => (params[name] === undefined || params[name] === null ? whole : String(params[name])));
}

/**
 * Puts message `key` into `el` (its text, or attribute `attr`: 'aria-label', 'title', 'placeholder')
 * and marks it, so that a change of language translates it again.
 */
export function localize(el, key, params = null, attr = null) {
  const data = attr ? `data-i18n-${attr}` : 'data-i18n';
  el.setAttribute(data, key);
  if (params && Object.keys(params).length) el.setAttribute(`${data}-args`, JSON.stringify(params));
  else el.removeAttribute(`${data}-args`);
  const text = t(key, params || {});
  if (attr) el.setAttribute(attr, text);
  else el.textContent = text;
  return el;
}

/** Translates every marked element under `root`. */
export function translate(root = document) {
  for (const [data, attr] of ATTRIBUTES) {
    const marked = [...(root.querySelectorAll ? root.querySelectorAll(`[${data}]`) : [])];
    if (root.hasAttribute && root.hasAttribute(data)) marked.push(root);
    for (const el of marked) {
      let params = {};
      const args = el.getAttribute(`${data}-args`);
      if (args) {
        try {
          params = JSON.parse(args);
        } catch { /* keep the placeholders */ }
      }
      const text = t(el.getAttribute(data), params);
      if (attr) el.setAttribute(attr, text);
      else el.textContent = text;
    }
  }
}

function showLanguage() {
  document.documentElement.lang = current;
  translate(document);
  for (const select of document.querySelectorAll('select[data-language-switch]')) select.value = current;
}

/**
 * Switches the page to `lang` (a supported language; anything else is English). `save: false` leaves
 * the saved choice alone (a language given by an embedding page rather than chosen by the user).
 */
export async function setLanguage(lang, { save = true } = {}) {
  const next = supported(lang) || DEFAULT_LANGUAGE;
  await load(next);
  current = next;
  if (save) {
    try {
      localStorage.setItem(STORAGE_KEY, next);
    } catch { /* storage may be off */ }
  }
  showLanguage();
  events.dispatchEvent(new CustomEvent('change', { detail: { lang: next } }));
}

/** Dates and times (milliseconds since the epoch) in the current locale; `options` as Intl.DateTimeFormat's. */
export function formatDate(ms, options = { dateStyle: 'medium', timeStyle: 'short' }) {
  if (typeof ms !== 'number' || !Number.isFinite(ms)) return '';
  return new Intl.DateTimeFormat(locale(), options).format(new Date(ms));
}

/** A clock time with seconds, in the current locale. */
export function formatTime(ms) {
  return formatDate(ms, { hour: '2-digit', minute: '2-digit', second: '2-digit' });
}

/** The name of a language (an ISO 639 code such as 'sv') in the current language, or the code. */
export function languageName(code) {
  try {
    return new Intl.DisplayNames([locale()], { type: 'language' }).of(code) || code;
  } catch {
    return code;
  }
}

function wireSwitches() {
  for (const select of document.querySelectorAll('select[data-language-switch]')) {
    if (!select.options.length) {
      for (const [code, name] of Object.entries(LANGUAGES)) {
        const option = new Option(name, code);
        option.lang = code;
        select.add(option);
      }
    }
    select.value = current;
    select.addEventListener('change', () => setLanguage(select.value));
  }
}

// At load (module scripts run after the document is parsed): the catalogues, then the page in its language.
const query = new URLSearchParams(window.location.search);
const initial = chooseLanguage({
  stored: storedChoice(),
  param: query.get('lang') || query.get('org.matrix.msc2873.client_language'),
  preferred: navigator.languages || [navigator.language],
});
await Promise.all([load(DEFAULT_LANGUAGE), load(initial)]);
current = initial;
showLanguage();
wireSwitches();
