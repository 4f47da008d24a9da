#!/usr/bin/env bash
# Downloads the test data (speech recordings and small model files) that the test suite reads from
# $SAMTAL_TEST_DATA (default: the folder `shared` next to the repository), on a machine with internet.
# Every file comes from a public GitHub repository at a fixed commit and is checked against its SHA-256;
# files already present with the right checksum are kept. Tests never run this script.
#
#   scripts/fetch-test-data.sh           download what is missing, verify everything
#   scripts/fetch-test-data.sh --check   only verify the files already there (no network)
#
# NOTE: no real Whisper speech-recognition model is among these files (the for-tests-ggml-tiny*.bin files
# carry no weights): a real model for transcription has to be fetched separately.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="${SAMTAL_TEST_DATA:-$repo/../shared}"
check_only=false
[[ "${1:-}" == "--check" ]] && check_only=true

whisper_cpp="ggml-org/whisper.cpp/233fe1fc9b48a09e361d3594520838ca266537fe"

# local path | sha256 | source: <owner>/<repo>/<commit>/<path in repo>
files=(
    "audio/jfk.wav|59dfb9a4acb36fe2a2affc14bacbee2920ff435cb13cc314a08c13f66ba7860e|$whisper_cpp/samples/jfk.wav"
    "audio/jfk.mp3|20d3323a2bcce6f25498b8911a397503a0a99fa92b6ba58d62788cb42b6e5459|$whisper_cpp/samples/jfk.mp3"
    "audio/librispeech-1272-128104-0000_picovoice-test.wav|79a003da951710b76da63b1220e29e16f361220429c9a024c87667d3c98946b7|Picovoice/cheetah/63a916f450e0334692a9d1b0cbef28d01dc85996/resources/audio_samples/test.wav"
    "models/ggml-silero-v6.2.0-for-tests.bin|2aa269b785eeb53a82983a20501ddf7c1d9c48e33ab63a41391ac6c9f7fb6987|$whisper_cpp/models/for-tests-silero-v6.2.0-ggml.bin"
    "models/ggml-silero-v5.1.2-for-tests.bin|29940d98d42b91fbd05ce489f3ecf7c72f0a42f027e4875919a28fb4c04ea2cf|ggml-org/whisper.cpp/e41bc5c61ae66af6be2bd7011769bb821a83e8ae/models/for-tests-silero-v5.1.2-ggml.bin"
    "models/silero_vad.onnx|1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3|snakers4/silero-vad/806dcba3f0b5d95282d0889a074954a2f8c6397b/src/silero_vad/data/silero_vad.onnx"
    "models/for-tests/for-tests-ggml-tiny.en.bin|dd6b7796204a1cdf7164666423034e6e1a7a3e9f5c22327b4b7974c4584bd82d|$whisper_cpp/models/for-tests-ggml-tiny.en.bin"
    "models/for-tests/for-tests-ggml-tiny.bin|c486fb9f14a28b1c1dc252741a431646cc573450c900b9d9c406e10294aa01e6|$whisper_cpp/models/for-tests-ggml-tiny.bin"
)

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

failed=0
for entry in "${files[@]}"; do
    IFS='|' read -r path sum source <<<"$entry"
    target="$dest/$path"
    if [[ -f "$target" && "$(sha256_of "$target")" == "$sum" ]]; then
        echo "ok        $path"
        continue
    fi
    if $check_only; then
        if [[ -f "$target" ]]; then echo "BAD SUM   $path"; else echo "MISSING   $path"; fi
        failed=1
        continue
    fi
    mkdir -p "$(dirname "$target")"
    url="https://raw.githubusercontent.com/$source"
    echo "fetching  $path  <-  $url"
    if ! curl -fsSL --retry 3 -o "$target.part" "$url"; then
        echo "FAILED    $path: download error" >&2
        rm -f "$target.part"; failed=1; continue
    fi
    got="$(sha256_of "$target.part")"
    if [[ "$got" != "$sum" ]]; then
        echo "FAILED    $path: sha256 $got, expected $sum" >&2
        rm -f "$target.part"; failed=1; continue
    fi
    mv "$target.part" "$target"
    echo "ok        $path"
done

if ((failed)); then
    echo "some test data files are missing or wrong under $dest" >&2
    exit 1
fi
echo "test data complete in $dest"
