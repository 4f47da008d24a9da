"""Checks Samtal transcript exports with parsers that share no code with Samtal.

Usage: check_export.py DIR DIGEST
DIR holds export.vtt, export.srt, export.txt and export.json of one meeting; DIGEST is the
X-Transcript-Digest the server sent. Parses the WebVTT with webvtt-py and the SRT with srt,
recomputes the transcript hash chain from the JSON export as docs/http-api.md describes it, and
prints one JSON line with what it found; the Rust test compares that with the store.
"""

import hashlib
import json
import os
import sys

import srt
import webvtt


def chain(transcript):
    m = transcript["meeting"]
    enc = lambda v: json.dumps(v, ensure_ascii=False, separators=(",", ":")).encode()
    link = hashlib.sha256(enc(["samtal-transcript-v1", m["id"], m["room"], m["started_at"]])).hexdigest()
    segs = sorted(transcript["segments"], key=lambda s: (s["start_ms"], s["end_ms"], s["utterance_id"].encode()))
    for s in segs:
        fields = [s["utterance_id"], s["participant_id"], s["speaker_name"], s["start_ms"], s["end_ms"], s["text"], s["language"]]
        link = hashlib.sha256(link.encode() + b"\n" + enc(fields)).hexdigest()
    return "sha256:" + link


def header_digest(text):
    for line in text.splitlines():
        if line.startswith("Transcript digest "):
            return line[len("Transcript digest "):]
    return None


def ms(td):
    return int(round(td.total_seconds() * 1000))


def main():
    folder, digest = sys.argv[1], sys.argv[2]
    path = lambda ext: os.path.join(folder, "export." + ext)
    vtt_text = open(path("vtt"), encoding="utf-8").read()
    vtt = webvtt.read(path("vtt"))
    vtt_cues = [{"start": c.start, "end": c.end, "voice": c.voice, "text": c.text} for c in vtt.captions]
    srt_cues = [{"index": c.index, "start_ms": ms(c.start), "end_ms": ms(c.end), "content": c.content}
                for c in srt.parse(open(path("srt"), encoding="utf-8").read())]
    transcript = json.load(open(path("json"), encoding="utf-8"))
    print(json.dumps({
        "vtt_cues": vtt_cues,
        "srt_cues": srt_cues,
        "vtt_digest": header_digest(vtt_text),
        "txt_digest": header_digest(open(path("txt"), encoding="utf-8").read()),
        "json_digest": transcript["meeting"]["transcript_digest"],
        "recomputed_digest": chain(transcript),
        "header_digest": digest,
    }, ensure_ascii=False))


if __name__ == "__main__":
    main()
