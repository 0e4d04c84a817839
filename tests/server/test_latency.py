"""Events leave the server when they are written, not when the client's TCP stack next sends an
ACK (`voxrt serve --engine fake`, no model).

With Nagle's algorithm on the server's sockets, a small write waits for the ACK of the previous
one, and a client that has just sent holds its ACK back (Linux delays it by up to ~40 ms). Measured
before the server set TCP_NODELAY: the second of two events written back to back arrived 40-47 ms
after the first on a new connection's first turn (this test), 24-29 ms on later turns of the tiny
checkpoint, and a real-time client's time to first audio moved in steps of its chunk period.

    VOXRT_SERVE=build/voxrt-serve python tests/server/test_latency.py
"""
import base64
import json
import math
import os
import struct
import time
import unittest

from websockets.sync.client import connect

from server_util import Server

BIN = os.environ.get("VOXRT_SERVE", "build/voxrt-serve")

# The server writes these two events one after the other on the connection's thread, in the
# handler of the client's commit (docs/server.md): nothing happens between them.
FIRST, SECOND = "input_audio_buffer.committed", "conversation.item.added"


class BackToBackEvents(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = Server(BIN, "--engine", "fake", "--fake-step-ms", "5", "--max-sessions", "2")

    @classmethod
    def tearDownClass(cls):
        assert cls.server.stop() == 0

    def test_events_written_together_arrive_together(self):
        tone = b"".join(struct.pack("<h", int(6000 * math.sin(i * 0.07))) for i in range(24000))
        gaps = []
        for _ in range(6):  # a new conversation each time: its first turn
            with connect(self.server.base.replace("http", "ws") + "/v1/realtime") as ws:
                self.assertEqual(json.loads(ws.recv(timeout=20))["type"], "session.created")
                ws.send(json.dumps({"type": "session.update", "session": {
                    "audio": {"input": {"turn_detection": None}}}}))
                self.assertEqual(json.loads(ws.recv(timeout=20))["type"], "session.updated")
                ws.send(json.dumps({"type": "input_audio_buffer.append",
                                    "audio": base64.b64encode(tone).decode()}))
                # commit, then at once ask for the answer (as a push-to-talk client does): the
                # client has just sent, so its stack holds back the ACK of the server's first event
                ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
                ws.send(json.dumps({"type": "response.create"}))
                t = {}
                while "response.done" not in t:
                    ev = json.loads(ws.recv(timeout=60))
                    self.assertNotEqual(ev["type"], "error", ev)
                    t.setdefault(ev["type"], time.monotonic())
                self.assertIn(FIRST, t)
                gaps.append((t[SECOND] - t[FIRST]) * 1000)
            self.server.wait_idle()
        # The smallest of six: a busy machine may delay any one of them, but with Nagle's
        # algorithm every one waited for a delayed ACK (40-44 ms here, measured).
        self.assertLess(min(gaps), 10.0, f"ms between {FIRST} and {SECOND}: {gaps}")


if __name__ == "__main__":
    unittest.main(verbosity=2)
