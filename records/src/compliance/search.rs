//! The full-text query language and highlighting, the same for SQLite (FTS5) and PostgreSQL.
//!
//! A query is a list of words, all of which must occur in a segment: whole words, case-insensitive,
//! accents significant; a word ending in `*` matches words that start with it. Words are runs of
//! letters and digits (anything else separates), which is how both backends' indexes cut text, so
//! the two find the same segments. The highlight is the segment's text, HTML-escaped, with each
//! matching word in `<mark>…</mark>`; it is computed here, not by the database, so it is identical.

use html_escape::encode_text as escape;

/// Most words in one query.
pub const MAX_TERMS: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Term {
    /// Lowercase letters and digits.
    pub word: String,
    pub prefix: bool,
}

/// A parsed query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub terms: Vec<Term>,
}

impl Query {
    /// Parses `q`; the error says what is wrong with it.
    pub fn parse(q: &str) -> Result<Query, String> {
        let mut terms: Vec<Term> = Vec::new();
        for raw in q.split_whitespace() {
            let prefix = raw.ends_with('*');
            let words: Vec<String> = raw
                .split(|c: char| !c.is_alphanumeric())
                .filter(|w| !w.is_empty())
                .map(str::to_lowercase)
                .collect();
            let count = words.len();
            for (i, word) in words.into_iter().enumerate() {
                // Only the last word of `e-bud*` is a prefix.
                let term = Term {
                    word,
                    prefix: prefix && i + 1 == count,
                };
                if !terms.contains(&term) {
                    terms.push(term);
                }
            }
        }
        if terms.is_empty() {
            return Err("q must contain at least one word (letters or digits)".into());
        }
        if terms.len() > MAX_TERMS {
            return Err(format!("q has {} words; at most {MAX_TERMS} are allowed", terms.len()));
        }
        Ok(Query { terms })
    }

    /// An FTS5 MATCH expression: quoted words (a word holds no quote), `*` for prefixes, implicit AND.
    pub fn fts5(&self) -> String {
        self.terms
            .iter()
            .map(|t| format!("\"{}\"{}", t.word, if t.prefix { "*" } else { "" }))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// A PostgreSQL `to_tsquery('simple', …)` text: quoted lexemes, `:*` for prefixes, `&` between.
    pub fn tsquery(&self) -> String {
        self.terms
            .iter()
            .map(|t| format!("'{}'{}", t.word, if t.prefix { ":*" } else { "" }))
            .collect::<Vec<_>>()
            .join(" & ")
    }

    fn matches(&self, word: &str) -> bool {
        let word = word.to_lowercase();
        self.terms.iter().any(|t| {
            if t.prefix {
                word.starts_with(&t.word)
            } else {
                word == t.word
            }
        })
    }

    /// `text`, HTML-escaped, with each word that matches a term wrapped in `<mark>…</mark>`.
    pub fn highlight(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len() + 32);
        let mut word = String::new();
        let flush = |word: &mut String, out: &mut String| {
            if word.is_empty() {
                return;
            }
            if self.matches(word) {
                out.push_str("<mark>");
                out.push_str(&escape(word));
                out.push_str("</mark>");
            } else {
                out.push_str(&escape(word));
            }
            word.clear();
        };
        for c in text.chars() {
            if c.is_alphanumeric() {
                word.push(c);
            } else {
                flush(&mut word, &mut out);
                out.push_str(&escape(c.encode_utf8(&mut [0; 4])));
            }
        }
        flush(&mut word, &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_words_prefixes_and_punctuation() {
        let q = Query::parse("  Budget* e-post  ÅSA budget* ").unwrap();
        let words: Vec<_> = q.terms.iter().map(|t| (t.word.as_str(), t.prefix)).collect();
        assert_eq!(words, [("budget", true), ("e", false), ("post", false), ("åsa", false)]);
        assert_eq!(q.fts5(), "\"budget\"* \"e\" \"post\" \"åsa\"");
        assert_eq!(q.tsquery(), "'budget':* & 'e' & 'post' & 'åsa'");
        // Quotes and operators are separators, never syntax.
        assert_eq!(Query::parse("\"a' OR 1=1 --").unwrap().fts5(), "\"a\" \"or\" \"1\"");
        assert!(Query::parse(" *-- ").unwrap_err().contains("at least one word"));
        let many: Vec<String> = (0..17).map(|i| format!("w{i}")).collect();
        assert!(Query::parse(&many.join(" ")).unwrap_err().contains("at most 16"));
    }

    #[test]
    fn highlights_whole_words_and_prefixes_escaped() {
        let q = Query::parse("budget* möte").unwrap();
        assert_eq!(
            q.highlight("Budgeten & <möte>, mötet."),
            "<mark>Budgeten</mark> &amp; &lt;<mark>möte</mark>&gt;, mötet."
        );
        assert_eq!(q.highlight("inget"), "inget");
    }
}
