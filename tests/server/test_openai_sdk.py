"""The official openai Python SDK against a live `voxrt serve` on a checkpoint (CI: the tiny
random-weight checkpoint, whose answers are noise, not speech; the GPU machine: the full model).

    VOXRT_SERVE=build/voxrt-serve VOXRT_MODEL=tests/data/tiny/model python tests/server/test_openai_sdk.py
"""
import base64
import io
import json
import os
import threading
import time
import unittest
import wave

from openai import OpenAI

from server_util import DATA, Server, chunks_b64, question_pcm24

BIN = os.environ.get("VOXRT_SERVE", "build/voxrt-serve")
MODEL = os.environ.get("VOXRT_MODEL", os.path.join(DATA, "tiny", "model"))
QUESTION = os.path.join(DATA, "audio", "question.wav")


class OpenAISdk(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        # --round-budget-ms 0: the batching test needs its four answers admitted even on a busy
        # machine (admission control is tested in scheduler_test and test_load)
        cls.server = Server(BIN, "-m", MODEL, "--max-sessions", "4", "-t", "2", "--round-budget-ms", "0")
        cls.client = OpenAI(base_url=cls.server.base + "/v1", api_key="unused", max_retries=0, timeout=300)
        cls.model = cls.client.models.list().data[0].id

    @classmethod
    def tearDownClass(cls):
        assert cls.server.stop() == 0, "".join(cls.server.log)

    def tearDown(self):
        self.server.wait_idle()

    def test_transcription(self):
        with open(QUESTION, "rb") as f:
            t = self.client.audio.transcriptions.create(model=self.model, file=f)
        self.assertIsInstance(t.text, str)
        self.assertGreater(len(t.text), 0)
        with open(QUESTION, "rb") as f:
            v = self.client.audio.transcriptions.create(model=self.model, file=f, response_format="verbose_json")
        self.assertAlmostEqual(v.duration, 4.85, places=1)
        self.assertEqual(v.text, t.text)  # greedy: the same transcript
        with open(QUESTION, "rb") as f:
            plain = self.client.audio.transcriptions.create(model=self.model, file=f, response_format="text")
        self.assertEqual(plain.strip(), t.text.strip())
        with open(QUESTION, "rb") as f:
            stream = self.client.audio.transcriptions.create(model=self.model, file=f, stream=True)
            deltas, done = [], None
            for ev in stream:
                if ev.type == "transcript.text.delta":
                    deltas.append(ev.delta)
                elif ev.type == "transcript.text.done":
                    done = ev.text
        self.assertGreater(len(deltas), 1)
        self.assertEqual("".join(deltas), done)
        self.assertEqual(done, t.text)

    def test_speech(self):
        r = self.client.audio.speech.create(model=self.model, voice="uk-male", input="Good morning.",
                                            response_format="wav")
        with wave.open(io.BytesIO(r.content)) as w:
            self.assertEqual(w.getframerate(), 24000)
            self.assertEqual(w.getnchannels(), 1)
            n_wav = w.getnframes()
        # (the tiny random-weight checkpoint may end its turn before any audio: no length check)
        # streamed raw PCM as it is made: the same samples (greedy text, seeded audio)
        with self.client.audio.speech.with_streaming_response.create(
                model=self.model, voice="uk-male", input="Good morning.", response_format="pcm") as s:
            pieces = list(s.iter_bytes())
        pcm = b"".join(pieces)
        self.assertEqual(len(pcm) // 2, n_wav)
        # SSE
        with self.client.audio.speech.with_streaming_response.create(
                model=self.model, voice="us-female", input="Hello.", response_format="pcm",
                stream_format="sse") as s:
            events = [json.loads(line[6:]) for line in s.iter_lines() if line.startswith("data: ")]
        self.assertEqual(events[-1]["type"], "speech.audio.done")
        audio = b"".join(base64.b64decode(e["audio"]) for e in events if e["type"] == "speech.audio.delta")
        self.assertEqual(len(audio) % 2, 0)

    def test_speech_refuses_unknown_voice(self):
        from openai import BadRequestError
        with self.assertRaises(BadRequestError) as cm:
            self.client.audio.speech.create(model=self.model, voice="alloy", input="x")
        self.assertEqual(cm.exception.body["param"], "voice")

    def _audio_message(self):
        with open(QUESTION, "rb") as f:
            data = base64.b64encode(f.read()).decode()
        return [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": data, "format": "wav"}}]}]

    def test_chat_audio_in_audio_out(self):
        c = self.client.chat.completions.create(model=self.model, modalities=["text", "audio"],
                                                audio={"voice": "default", "format": "wav"},
                                                messages=self._audio_message(), max_tokens=60)
        m = c.choices[0].message
        self.assertIsNotNone(m.audio)
        with wave.open(io.BytesIO(base64.b64decode(m.audio.data))) as w:
            self.assertEqual(w.getframerate(), 24000)
            frames = w.getnframes()
        self.assertGreater(frames, 0)
        self.assertIsInstance(m.audio.transcript, str)
        # random weights run to max_tokens; the real model may end its turn sooner
        self.assertLessEqual(c.usage.completion_tokens, 60)
        self.assertEqual(c.choices[0].finish_reason, "length" if c.usage.completion_tokens == 60 else "stop")
        # multi-turn: the history comes from the messages
        msgs = self._audio_message() + [{"role": "assistant", "content": m.audio.transcript},
                                        {"role": "user", "content": "And in one word?"}]
        c2 = self.client.chat.completions.create(model=self.model, modalities=["text", "audio"],
                                                 audio={"voice": "default", "format": "wav"},
                                                 messages=msgs, max_tokens=20)
        self.assertGreater(c2.usage.prompt_tokens, c.usage.prompt_tokens)

    def test_concurrent_answers_are_batched_and_equal_alone(self):
        """Answers running at once advance in one batched engine step each round; each still
        comes out exactly as it would alone (same seed, same messages: same text and audio) where
        the server says batching is exact (/v1/models: CPU, or CUDA in fp32; in bf16 on CUDA the
        batched products sum in another order than the lone fused kernels)."""
        def ask(out, i):
            c = self.client.chat.completions.create(model=self.model, modalities=["text", "audio"],
                                                    audio={"voice": "default", "format": "pcm16"},
                                                    messages=self._audio_message(), max_tokens=40,
                                                    seed=7, temperature=0.8)
            out[i] = (c.choices[0].message.audio.transcript, c.choices[0].message.audio.data)

        alone = [None]
        ask(alone, 0)
        self.server.wait_idle()
        before = self.server.metrics()
        together = [None] * 4
        threads = [threading.Thread(target=ask, args=(together, i)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        after = self.server.metrics()
        info = self.client.models.list().data[0].model_dump().get("voxrt", {})
        for got in together:
            self.assertIsNotNone(got)
            self.assertTrue(got[0] and got[1])
            if info.get("batch_exact", True):  # CPU, or CUDA fp32: bit for bit
                self.assertEqual(got[0], alone[0][0])
                self.assertEqual(got[1], alone[0][1])
        rows = after["voxrt_batch_rows_count"] - before["voxrt_batch_rows_count"]
        alone_rows = after['voxrt_batch_rows_bucket{le="1"}'] - before['voxrt_batch_rows_bucket{le="1"}']
        self.assertGreater(rows - alone_rows, 0, "no step advanced more than one answer")
        # steps count answers advanced; step rounds are fewer than that
        steps = after["voxrt_steps_total"] - before["voxrt_steps_total"]
        self.assertLess(rows, steps)

    def test_chat_streamed(self):
        stream = self.client.chat.completions.create(model=self.model, modalities=["text", "audio"],
                                                     audio={"voice": "default", "format": "pcm16"},
                                                     messages=self._audio_message(), max_tokens=80, stream=True,
                                                     stream_options={"include_usage": True})
        transcript, audio, finish, usage = [], b"", None, None
        for chunk in stream:
            if chunk.usage:
                usage = chunk.usage
            for ch in chunk.choices:
                a = getattr(ch.delta, "audio", None)
                if a:
                    a = a if isinstance(a, dict) else a.model_dump()
                    if a.get("transcript"):
                        transcript.append(a["transcript"])
                    if a.get("data"):
                        audio += base64.b64decode(a["data"])
                if ch.finish_reason:
                    finish = ch.finish_reason
        self.assertGreater(len(audio), 0)
        self.assertEqual(len(audio) % 2, 0)
        self.assertIn(finish, ("stop", "length"))
        self.assertLessEqual(usage.completion_tokens, 80)
        self.assertGreater(usage.completion_tokens, 0)
        # the streamed transcript equals the non-streamed one (greedy text)
        c = self.client.chat.completions.create(model=self.model, modalities=["text", "audio"],
                                                audio={"voice": "default", "format": "wav"},
                                                messages=self._audio_message(), max_tokens=80)
        self.assertEqual("".join(transcript), c.choices[0].message.audio.transcript)

    def test_text_chat(self):
        c = self.client.chat.completions.create(model=self.model, messages=[{"role": "user", "content": "Hi"}],
                                                max_tokens=16)
        self.assertIsInstance(c.choices[0].message.content, str)
        self.assertLessEqual(c.usage.completion_tokens, 16)
        parts = []
        for chunk in self.client.chat.completions.create(model=self.model, max_tokens=16, stream=True,
                                                         messages=[{"role": "user", "content": "Hi"}]):
            for ch in chunk.choices:
                if ch.delta.content:
                    parts.append(ch.delta.content)
        self.assertEqual("".join(parts), c.choices[0].message.content)

    def test_realtime_conversation_with_barge_in(self):
        pcm = question_pcm24()
        chunks = chunks_b64(pcm)
        with self.client.realtime.connect(model=self.model) as conn:
            self.assertEqual(conn.recv().type, "session.created")
            conn.session.update(session={"type": "realtime", "audio": {"input": {"turn_detection": {
                "type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300, "silence_duration_ms": 500}}}})
            self.assertEqual(conn.recv().type, "session.updated")

            def speak():  # 20 ms chunks at real-time pace
                t0 = time.monotonic()
                for i, c in enumerate(chunks):
                    conn.input_audio_buffer.append(audio=c)
                    delay = t0 + (i + 1) * 0.02 - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)

            t = threading.Thread(target=speak)
            t.start()
            seen = []
            deltas = 0
            transcript = []
            barge = None
            responses = []
            truncated = None
            deadline = time.time() + 240
            while time.time() < deadline:
                ev = conn.recv()
                seen.append(ev.type)
                if ev.type == "error":
                    self.fail(f"error event: {ev.error}")
                if ev.type == "response.output_audio.delta":
                    deltas += 1
                    self.assertGreater(len(base64.b64decode(ev.delta)), 0)
                    if len(responses) == 0 and deltas == 3 and barge is None:
                        # the user speaks again while the answer plays: barge-in
                        t.join()
                        barge = threading.Thread(target=speak)
                        barge.start()
                if ev.type == "response.output_audio_transcript.delta":
                    transcript.append(ev.delta)
                if ev.type == "response.output_audio_transcript.done":
                    self.assertEqual("".join(transcript), ev.transcript)
                    transcript = []
                if ev.type == "conversation.item.truncated":
                    truncated = ev
                if ev.type == "response.done":
                    responses.append(ev.response)
                    if len(responses) == 2:
                        break
            t.join()
            if barge:
                barge.join()
        self.assertEqual(len(responses), 2, seen[-20:])
        # first turn: speech detected, stopped by the server VAD, committed, answered with audio
        first = seen.index("response.created")
        for e in ("input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped",
                  "input_audio_buffer.committed"):
            self.assertIn(e, seen[:first])
        # barge-in: the first answer was cut to what was played
        self.assertIsNotNone(truncated)
        self.assertEqual(truncated.item_id, responses[0].output[0].id)
        # The barge-in cancels the first answer while it runs. On a loaded machine the answer may
        # already have ended (the tiny checkpoint's answers run to the length limit) before the
        # server VAD heard the second utterance start; then it ended on its own, before that event.
        first_done = seen.index("response.done")
        barge_started = seen.index("input_audio_buffer.speech_started", first + 1)
        if responses[0].status == "cancelled":
            self.assertEqual(responses[0].status_details.reason, "turn_detected")
            self.assertLess(barge_started, first_done)
        else:
            self.assertIn(responses[0].status, ("completed", "incomplete"))
            self.assertLess(first_done, barge_started, seen)
        # and the conversation went on: a second full turn with audio
        second = seen.index("response.created", first + 1)
        self.assertIn("input_audio_buffer.speech_stopped", seen[first:second])
        self.assertIn("response.output_audio.delta", seen[second:])
        self.assertIn(responses[1].status, ("completed", "incomplete"))


if __name__ == "__main__":
    unittest.main(verbosity=2)
