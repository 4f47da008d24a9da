//! `samtal-transcriber`: the transcription worker process. For now a stub that says what it will do; the
//! meeting-joining side is not built yet. It must never start transcribing without a verified model.

fn main() {
    eprintln!(
        "samtal-transcriber {}: the offline pipeline (Opus decode, VAD, Whisper) is in the library; \
         joining meetings is not implemented yet.",
        env!("CARGO_PKG_VERSION")
    );
    std::process::exit(2);
}
