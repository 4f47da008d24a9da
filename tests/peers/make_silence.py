#!/usr/bin/env python3
"""Writes a silent WAV (16-bit mono PCM, all samples zero): the control input of the audio tests,
which must give ~zero energy at the receiver.

Usage: make_silence.py OUT.wav [--seconds 10] [--rate 48000]
(sox does the same: sox -D -n -r 48000 -c 1 -b 16 OUT.wav trim 0 10 ; -D turns off dithering, which would add 1-bit noise)
"""

import argparse
import wave


def main():
    p = argparse.ArgumentParser(description="Write a silent 16-bit mono WAV.")
    p.add_argument("out")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--rate", type=int, default=48000)
    a = p.parse_args()
    with wave.open(a.out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(a.rate)
        w.writeframes(b"\0\0" * int(a.seconds * a.rate))


if __name__ == "__main__":
    main()
