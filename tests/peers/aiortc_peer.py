#!/usr/bin/env python3
"""An independent WebRTC test peer (aiortc) that speaks Samtal's signaling protocol (docs/protocol.md).

It joins a room over the websocket, optionally publishes a WAV file as Opus on its `publish` connection
(the file is LOOPED, so it keeps sending for as long as the peer runs), answers every `subscribe` offer of
the server (renegotiations included), decodes the remote audio and measures it per remote participant.

When it has received at least --min-audio seconds of audio from each of --expect-peers participants
(then it stays --linger seconds more, so the others can finish too), or when --duration runs out,
it prints ONE JSON line on stdout:

    {"participant_id": "...", "received": {"<participant id>": {"frames": N, "samples": S, "seconds": T,
     "rms": X, "peak": Y, "name": "...", "video_frames": V}}, "errors": ["..."]}

rms and peak are of the decoded 16-bit samples scaled to [-1, 1]. A silent WAV gives rms ~0.
With --video-progress it also prints, once a second before that, a line
    {"progress": {"t": <ms since the Unix epoch>, "frames": <video frames decoded in that second>,
     "width": W, "height": H}}
with the size of the last video frame decoded (0 before any), for a driver that watches it live.
Then it sends `leave` and exits: 0 when all went well; 1 when --expect-peers was not reached in time or the
server sent any `error` (the JSON is printed anyway); 2 on a fatal protocol error (nothing on stdout).
Everything else is logged to stderr.

Usage: aiortc_peer.py --ws ws://127.0.0.1:PORT/ws --room R --name N [--token T] [--wav FILE]
                      [--duration SECS] [--expect-peers K] [--min-audio SECS] [--linger SECS]
                      [--host ADDR] [--video-progress] [-v]

aiortc estimates its video downlink itself and reports it by REMB (it does not do transport-wide
congestion feedback), from the abs-send-time the sender writes into each packet.
"""

import argparse
import asyncio
import json
import logging
import math
import re
import sys
import time

# aioice leaves 127.0.0.1 out of its host candidates; the tests run on loopback (or inside a network
# namespace of their own, --host), so offer exactly that address. This must happen before aiortc is
# imported (aiortc binds the name at import time in some versions); the address is read when
# candidates are gathered, after main() has set it from --host.
import aioice.ice

HOST = "127.0.0.1"
aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: [HOST]

import websockets  # noqa: E402
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription  # noqa: E402
from aiortc.contrib.media import MediaPlayer  # noqa: E402
from aiortc.mediastreams import MediaStreamError  # noqa: E402
from aiortc.sdp import candidate_from_sdp  # noqa: E402

log = logging.getLogger("aiortc_peer")


class ProtocolError(Exception):
    """The server broke the protocol or refused us fatally."""


def msids_by_mid(sdp):
    """Maps each m-section's mid to its (stream id, track id) from the `a=msid` lines of an SDP."""
    result = {}
    for section in re.split(r"\r?\nm=", sdp)[1:]:
        mid = re.search(r"^a=mid:(\S+)", section, re.M)
        msid = re.search(r"^a=msid:(\S+)(?: (\S+))?", section, re.M)
        if mid and msid:
            result[mid.group(1)] = (msid.group(1), msid.group(2))
    return result


class Stats:
    """Running measurements of what one remote participant sent us."""

    def __init__(self):
        self.frames = 0
        self.samples = 0  # per channel
        self.sum_squares = 0.0
        self.values = 0  # all channels
        self.peak = 0.0
        self.video_frames = 0
        self.video_size = (0, 0)

    def add_audio(self, frame):
        data = frame.to_ndarray().astype("float64") / 32768.0
        self.frames += 1
        self.samples += frame.samples
        self.sum_squares += float((data * data).sum())
        self.values += data.size
        if data.size:
            self.peak = max(self.peak, float(abs(data).max()))

    def seconds(self, rate=48000):
        return self.samples / rate

    def to_json(self, name):
        rms = math.sqrt(self.sum_squares / self.values) if self.values else 0.0
        return {
            "frames": self.frames,
            "samples": self.samples,
            "seconds": round(self.seconds(), 3),
            "rms": rms,
            "peak": self.peak,
            "name": name,
            "video_frames": self.video_frames,
        }


class Peer:
    def __init__(self, args):
        self.args = args
        self.ws = None
        self.participant_id = None
        self.names = {}  # participant id -> display name
        self.track_owner = {}  # track id -> participant id, from joined/track_published
        self.stats = {}  # participant id -> Stats
        self.errors = []
        self.publish_pc = None
        self.subscribe_pc = None
        self.sub_msids = {}  # mid -> (stream id, track id) of the latest subscribe offer
        self.player = None
        self.tasks = []
        self.done = asyncio.Event()

    # --- websocket --------------------------------------------------------------------------------
    async def send(self, msg):
        log.debug("-> %s", msg.get("type"))
        await self.ws.send(json.dumps(msg))

    async def recv(self):
        raw = await self.ws.recv()
        if not isinstance(raw, str):
            raise ProtocolError("server sent a binary frame")
        msg = json.loads(raw)
        if not isinstance(msg, dict) or "type" not in msg:
            raise ProtocolError(f"server sent a message without type: {raw[:200]}")
        log.debug("<- %s", msg["type"])
        return msg

    # --- session ----------------------------------------------------------------------------------
    async def run(self):
        a = self.args
        async with websockets.connect(a.ws, max_size=2**22) as ws:
            self.ws = ws
            join = {"type": "join", "room": a.room, "name": a.name}
            if a.token:
                join["token"] = a.token
            await self.send(join)
            msg = await self.recv()
            if msg["type"] == "error":
                raise ProtocolError(f"join refused: {msg.get('code')}: {msg.get('message')}")
            if msg["type"] != "joined":
                raise ProtocolError(f"expected joined, got {msg['type']}")
            self.participant_id = msg["participant_id"]
            log.info("joined room %s as %s", a.room, self.participant_id)
            for p in msg.get("participants", []):
                self.note_participant(p)

            if a.wav:
                await self.publish(a.wav)

            self.tasks.append(asyncio.create_task(self.heartbeat()))
            if a.video_progress:
                self.tasks.append(asyncio.create_task(self.progress()))
            reader = asyncio.create_task(self.read_loop())
            waiter = asyncio.create_task(self.done.wait())
            finished, _ = await asyncio.wait(
                {reader, waiter}, timeout=a.duration, return_when=asyncio.FIRST_COMPLETED
            )
            if reader in finished:
                reader.result()  # raises the reader's error, if any
                raise ProtocolError("server closed the websocket")
            if waiter in finished:
                log.info("heard %d peers; lingering %.1f s", a.expect_peers, a.linger)
                await asyncio.sleep(a.linger)
            if reader.done():
                reader.result()
            reader.cancel()
            reached = self.peers_heard() >= a.expect_peers
            if not reached:
                self.errors.append(
                    f"timeout: heard {self.peers_heard()} of {a.expect_peers} peers "
                    f"within {a.duration} s"
                )
            self.report()
            try:
                await self.send({"type": "leave"})
            except websockets.ConnectionClosed:
                pass
        return 0 if reached and not self.errors else 1

    def note_participant(self, p):
        self.names[p["id"]] = p.get("name")
        for t in p.get("tracks", []):
            self.track_owner[t["track_id"]] = p["id"]

    async def read_loop(self):
        while True:
            msg = await self.recv()
            t = msg["type"]
            if t == "offer" and msg.get("pc") == "subscribe":
                await self.answer_subscribe(msg["sdp"])
            elif t == "answer" and msg.get("pc") == "publish":
                await self.publish_pc.setRemoteDescription(RTCSessionDescription(msg["sdp"], "answer"))
                log.info("publish connection negotiated")
            elif t == "candidate":
                await self.add_candidate(msg)
            elif t == "participant_joined":
                self.note_participant(msg["participant"])
            elif t == "track_published":
                self.track_owner[msg["track"]["track_id"]] = msg["participant_id"]
            elif t == "error":
                text = f"{msg.get('code')}: {msg.get('message')} (ref_type {msg.get('ref_type')})"
                log.error("server error %s", text)
                self.errors.append(text)
                if msg.get("fatal"):
                    raise ProtocolError(f"fatal server error {text}")
            elif t == "removed":
                raise ProtocolError(f"removed from the room by {msg.get('by')}")
            # pong, participant_left, mute_changed, track_unpublished, ...: nothing to do here

    async def heartbeat(self):
        n = 0
        while True:
            await asyncio.sleep(10)
            n += 1
            await self.send({"type": "ping", "nonce": str(n)})

    async def progress(self):
        """Once a second: video frames decoded since the last line, and the last frame's size."""
        last = 0
        while True:
            await asyncio.sleep(1)
            total = sum(s.video_frames for s in self.stats.values())
            sizes = [s.video_size for s in self.stats.values() if s.video_frames]
            width, height = sizes[-1] if sizes else (0, 0)
            line = {"t": int(time.time() * 1000), "frames": total - last, "width": width, "height": height}
            print(json.dumps({"progress": line}), flush=True)
            last = total

    # --- publishing -------------------------------------------------------------------------------
    async def publish(self, wav):
        self.player = MediaPlayer(wav, loop=True)
        pc = self.publish_pc = self.new_pc("publish")
        track = self.player.audio
        if track is None:
            raise ProtocolError(f"{wav} has no audio")
        pc.addTrack(track)
        await pc.setLocalDescription(await pc.createOffer())  # gathers all candidates into the SDP
        sdp = pc.localDescription.sdp
        track_ids = [t for (_, t) in msids_by_mid(sdp).values() if t]
        await self.send(
            {
                "type": "offer",
                "pc": "publish",
                "sdp": sdp,
                "tracks": [{"track_id": tid, "source": "microphone"} for tid in track_ids],
            }
        )
        log.info("published %s as track %s", wav, track_ids)

    # --- subscribing ------------------------------------------------------------------------------
    async def answer_subscribe(self, sdp):
        if self.subscribe_pc is None:
            pc = self.subscribe_pc = self.new_pc("subscribe")
            pc.on("track", lambda track: self.on_track(pc, track))
        self.sub_msids = msids_by_mid(sdp)
        pc = self.subscribe_pc
        await pc.setRemoteDescription(RTCSessionDescription(sdp, "offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        await self.send({"type": "answer", "pc": "subscribe", "sdp": pc.localDescription.sdp})
        log.info("answered subscribe offer (%d m-sections)", len(self.sub_msids))

    def on_track(self, pc, track):
        transceiver = next((t for t in pc.getTransceivers() if t.receiver.track is track), None)
        log.info("remote %s track %s (mid %s)", track.kind, track.id, transceiver and transceiver.mid)
        self.tasks.append(asyncio.create_task(self.consume(transceiver, track)))

    def owner(self, transceiver, track):
        """Whose is this track? The stream id (= participant id) of its m-section in the latest offer;
        the m-section may be reused for another participant after renegotiation."""
        if transceiver is not None and transceiver.mid in self.sub_msids:
            return self.sub_msids[transceiver.mid][0]
        return self.track_owner.get(track.id, f"unknown-track:{track.id}")

    async def consume(self, transceiver, track):
        try:
            while True:
                frame = await track.recv()
                stats = self.stats.setdefault(self.owner(transceiver, track), Stats())
                if track.kind == "audio":
                    stats.add_audio(frame)
                    if self.peers_heard() >= self.args.expect_peers > 0:
                        self.done.set()
                else:
                    stats.video_frames += 1
                    stats.video_size = (frame.width, frame.height)
        except MediaStreamError:
            log.info("remote track %s ended", track.id)

    def peers_heard(self):
        need = self.args.min_audio
        return sum(1 for s in self.stats.values() if s.seconds() >= need)

    # --- helpers ----------------------------------------------------------------------------------
    def new_pc(self, which):
        # No ICE servers: the default is a public STUN server, and tests must stay on loopback.
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))

        @pc.on("connectionstatechange")
        async def on_state():
            log.info("%s connection %s", which, pc.connectionState)
            if pc.connectionState == "failed":
                self.errors.append(f"{which} peer connection failed")

        return pc

    async def add_candidate(self, msg):
        pc = self.publish_pc if msg.get("pc") == "publish" else self.subscribe_pc
        c = msg.get("candidate") or {}
        if pc is None or not c.get("candidate"):
            return
        cand = candidate_from_sdp(c["candidate"].removeprefix("candidate:"))
        cand.sdpMid = c.get("sdp_mid")
        cand.sdpMLineIndex = c.get("sdp_mline_index")
        await pc.addIceCandidate(cand)

    def report(self):
        received = {pid: s.to_json(self.names.get(pid)) for pid, s in self.stats.items()}
        out = {"participant_id": self.participant_id, "received": received, "errors": self.errors}
        print(json.dumps(out), flush=True)

    async def close(self):
        for t in self.tasks:
            t.cancel()
        if self.player and self.player.audio:
            self.player.audio.stop()
        for pc in (self.publish_pc, self.subscribe_pc):
            if pc is not None:
                try:
                    await asyncio.wait_for(pc.close(), 5)
                except Exception as e:  # closing must not hide the result
                    log.warning("closing peer connection: %s", e)


async def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ws", required=True, help="websocket URL, e.g. ws://127.0.0.1:PORT/ws")
    p.add_argument("--room", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--token", help="JWT for servers that require one")
    p.add_argument("--wav", help="WAV file to publish as the microphone (looped)")
    p.add_argument("--duration", type=float, default=30.0, help="give up after this many seconds")
    p.add_argument("--expect-peers", type=int, default=0, help="stop once this many peers were heard")
    p.add_argument("--min-audio", type=float, default=3.0, help="seconds of audio that count as heard")
    p.add_argument("--linger", type=float, default=3.0, help="seconds to stay after hearing all peers")
    p.add_argument("--host", default="127.0.0.1", help="the address to offer as ICE host candidate")
    p.add_argument("--video-progress", action="store_true", help="print video progress once a second")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args()
    global HOST
    HOST = args.host
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.DEBUG if args.verbose else logging.INFO,
        format=f"%(asctime)s {args.name} %(levelname)s %(message)s",
    )
    if not args.verbose:
        for noisy in ("aioice", "aiortc", "websockets"):
            logging.getLogger(noisy).setLevel(logging.WARNING)

    peer = Peer(args)
    try:
        return await peer.run()
    except (ProtocolError, websockets.ConnectionClosed, OSError, json.JSONDecodeError) as e:
        print(f"aiortc_peer {args.name}: {e}", file=sys.stderr)
        return 2
    finally:
        await peer.close()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
