"""The browser page (web/, served at `/`) in headless Chromium against a live `voxrt serve` on the
tiny random-weight checkpoint: the page is served from the binary, says that the weights are
random, streams a fake microphone (a WAV: a question, a pause, the question again) to
/v1/realtime, plays the answer while its text appears, and cuts the answer when the second
question talks over it.

    VOXRT_SERVE=build/voxrt-serve VOXRT_MODEL=tests/data/tiny/model VOXRT_BUILD_DIR=build \\
        python tests/server/test_page.py

Needs Debian's `chromium` and `chromium-driver` (scripts/install-deps.sh); without them the test
fails. The screenshot goes to $VOXRT_BUILD_DIR/artifacts/page.png. The barge-in needs an answer
longer than the pause: the tiny checkpoint's answers mostly run to their 512 steps (~27 s of
audio); when one ends early, a later answer (the fake microphone loops its file) is talked over.
"""
import array
import hashlib
import http.client
import json
import os
import shutil
import sys
import tempfile
import unittest
import wave

from server_util import DATA, Server, read_wav, resample_linear

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.support.ui import WebDriverWait

BIN = os.environ.get("VOXRT_SERVE", "build/voxrt-serve")
MODEL = os.environ.get("VOXRT_MODEL", os.path.join(DATA, "tiny", "model"))
BUILD = os.environ.get("VOXRT_BUILD_DIR", "build")
WEB = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "web")

# The fake microphone: silence, the question, a pause long enough for the first answer to start
# playing even on a slow machine (the tiny checkpoint's answers run to their 512 steps, far longer
# than the pause), the question again (the barge-in), then silence until the test ends.
LEAD_S, PAUSE_S, TAIL_S = 0.5, 12.0, 60.0
MIC_RATE = 48000


def find(*names):
    for n in names:
        p = shutil.which(n)
        if p:
            return p
    return None


def make_mic_wav(path):
    x, rate = read_wav(os.path.join(DATA, "audio", "question.wav"))
    speech = resample_linear(x, rate, MIC_RATE)

    def silence(s):
        return array.array("h", bytes(2 * int(s * MIC_RATE)))

    pcm = silence(LEAD_S) + speech + silence(PAUSE_S) + speech + silence(TAIL_S)
    if sys.byteorder != "little":
        pcm.byteswap()
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(MIC_RATE)
        w.writeframes(pcm.tobytes())
    return len(speech) / MIC_RATE


class Page(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = Server(BIN, "-m", MODEL, "--max-sessions", "2", "-t", "2")
        host, port = "127.0.0.1", cls.server.port
        cls.host, cls.port = host, port

    @classmethod
    def tearDownClass(cls):
        assert cls.server.stop() == 0, "".join(cls.server.log)

    def request(self, method, path, headers=None):
        c = http.client.HTTPConnection(self.host, self.port, timeout=30)
        c.request(method, path, headers=headers or {})
        r = c.getresponse()
        body = r.read()
        c.close()
        return r, body

    def test_static_files(self):
        # every file of web/ is served as it is on disk, with its type; `/` is index.html
        names = sorted(n for n in os.listdir(WEB) if not n.startswith("."))
        self.assertIn("index.html", names)
        types = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                 ".css": "text/css; charset=utf-8"}
        for name in names:
            with open(os.path.join(WEB, name), "rb") as f:
                want = f.read()
            r, body = self.request("GET", "/static/" + name)
            self.assertEqual(r.status, 200, name)
            self.assertEqual(body, want, name)
            self.assertEqual(r.getheader("Content-Type"), types[os.path.splitext(name)[1]], name)
            self.assertEqual(r.getheader("Cache-Control"), "no-cache", name)
            self.assertEqual(r.getheader("ETag"), '"%s"' % hashlib.sha1(want).hexdigest()[:16])
            # revalidation: the same ETag → 304 without a body
            r2, body2 = self.request("GET", "/static/" + name, {"If-None-Match": r.getheader("ETag")})
            self.assertEqual((r2.status, body2), (304, b""), name)
            # HEAD: the headers of GET, no body
            r3, body3 = self.request("HEAD", "/static/" + name)
            self.assertEqual((r3.status, body3), (200, b""), name)
            self.assertEqual(int(r3.getheader("Content-Length")), len(want), name)
        r, body = self.request("GET", "/")
        with open(os.path.join(WEB, "index.html"), "rb") as f:
            self.assertEqual(body, f.read())
        self.assertIn("default-src 'self'", r.getheader("Content-Security-Policy"))
        r, body = self.request("GET", "/?x=1")
        self.assertEqual(r.status, 200)
        for path in ("/static/missing.js", "/static/", "/static/../CMakeLists.txt", "/nothing"):
            r, body = self.request("GET", path)
            self.assertEqual(r.status, 404, path)
            self.assertEqual(json.loads(body)["error"]["code"], "not_found", path)
        r, body = self.request("POST", "/")
        self.assertEqual(r.status, 405)
        self.assertEqual(r.getheader("Allow"), "GET, HEAD")

    def test_models_say_random_weights(self):
        r, body = self.request("GET", "/v1/models")
        m = json.loads(body)["data"][0]
        has_info = os.path.exists(os.path.join(MODEL, "checkpoint_info.json"))
        self.assertEqual(m["voxrt"]["random_weights"], has_info)
        self.assertIn("default", m["voxrt"]["chat_voices"])
        self.assertEqual(m["voxrt"]["sample_rate"], 24000)

    def test_conversation_in_the_browser(self):
        chromium = find("chromium", "chromium-browser", "google-chrome")
        driver_bin = find("chromedriver")
        self.assertTrue(chromium and driver_bin,
                        "chromium and chromedriver are needed (bash scripts/install-deps.sh "
                        "installs Debian's chromium and chromium-driver)")
        tmp = tempfile.mkdtemp(prefix="voxrt-page-")
        mic = os.path.join(tmp, "mic.wav")
        speech_s = make_mic_wav(mic)
        opts = webdriver.ChromeOptions()
        opts.binary_location = chromium
        for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                  "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                  "--use-file-for-fake-audio-capture=" + mic,
                  "--autoplay-policy=no-user-gesture-required", "--window-size=1000,1100",
                  "--user-data-dir=" + os.path.join(tmp, "profile")):
            opts.add_argument(a)
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        driver = webdriver.Chrome(options=opts, service=Service(executable_path=driver_bin))
        try:
            self.converse(driver, speech_s)
        finally:
            os.makedirs(os.path.join(BUILD, "artifacts"), exist_ok=True)
            driver.save_screenshot(os.path.join(BUILD, "artifacts", "page.png"))
            logs = driver.get_log("browser")
            driver.quit()
            shutil.rmtree(tmp, ignore_errors=True)
        severe = [l for l in logs if l["level"] == "SEVERE"]
        self.assertEqual(severe, [], "browser console errors")

    def converse(self, driver, speech_s):
        driver.get(f"http://{self.host}:{self.port}/")
        js = lambda expr: driver.execute_script("return " + expr)

        def wait(s, cond, what):
            try:
                WebDriverWait(driver, s, poll_frequency=0.1).until(lambda d: cond())
            except TimeoutException:
                # the page and the server as they are when the wait gives up
                page = json.dumps(js(
                    "{state: voxrtPage.state, error: voxrtPage.lastError, turns: voxrtPage.turns, "
                    "audioDeltas: voxrtPage.audioDeltas, events: voxrtPage.events.filter(e => "
                    "!e.type.startsWith('input_audio_buffer.append') && "
                    "e.type !== 'response.output_audio.delta').slice(-40).map(e => e.dir + ' ' + e.type)}"))
                status, body = self.server.get("/metrics")
                metrics = [l for l in body.decode(errors="replace").splitlines()
                           if l.startswith("voxrt_") and "_bucket" not in l]
                raise AssertionError(f"{what} (after {s} s); page: {page}\nserver metrics:\n" +
                                     "\n".join(metrics) + "\nserver log (last 40 lines):\n" +
                                     "".join(self.server.log[-40:])) from None
        # the random-weight banner comes from /v1/models
        wait(30, lambda: js("voxrtPage.info !== null"), "the page did not read /v1/models")
        banner = driver.find_element(By.ID, "banner")
        self.assertEqual(banner.is_displayed(), bool(js("voxrtPage.info.random_weights")))
        if banner.is_displayed():
            self.assertIn("the answer is noise, not speech", banner.text)
        self.assertEqual(js("voxrtPage.state"), "idle")
        driver.find_element(By.ID, "start").click()
        # the state machine, as the page records it: listening → thinking → speaking
        js("(() => { const h = []; const p = voxrtPage; let last = null;"
           " window.__states = h; setInterval(() => { if (p.state !== last) {"
           " last = p.state; h.push(last); } }, 10); })()")
        wait(60, lambda: js("voxrtPage.state === 'listening'"), "never listening")
        wait(240, lambda: js("voxrtPage.state === 'speaking'"), "the first answer never played")
        wait(60, lambda: js("voxrtPage.audioDeltas > 2"), "no answer audio")
        first = js("voxrtPage.turns[0]")
        self.assertIsNotNone(first["latencyMs"], first)
        # from the end of speech to the answer: at least the VAD's 500 ms of silence
        self.assertGreaterEqual(first["latencyMs"], 450, first)
        self.assertLess(first["latencyMs"], 240000, first)
        # split at the first audio delta's arrival: the server's part and the page's own part
        # (playback start and output latency), which add up to the part after speech_stopped
        self.assertIsNotNone(first.get("pageMs"), first)
        self.assertGreaterEqual(first["pageMs"], 0, first)
        self.assertLessEqual(abs(first["deltaAfterStoppedMs"] + first["pageMs"] - first["afterStoppedMs"]), 1, first)
        # The second question talks over an answer: playback stops, the page cuts the answer to
        # what was played (one truncate; the server does not cut on its own). Usually the first
        # answer: the tiny checkpoint's answers mostly run to their 512 steps (~27 s of audio), far
        # longer than the pause. Random weights sometimes end an answer early (seen in CI: the
        # first one after 8.6 s, before the second question); the second question is then simply
        # answered, the fake microphone plays its file again, and a later answer is talked over.
        cut_at = "voxrtPage.turns.findIndex(t => t.interrupted === 'interrupted')"
        wait(240, lambda: js(f"{cut_at} >= 0 && voxrtPage.turns[{cut_at}].truncatedMs !== undefined"),
             "no answer was talked over and truncated")
        k = js(cut_at)
        cut = js(f"voxrtPage.turns[{k}]")
        for t in js(f"voxrtPage.turns.slice(0, {k})"):  # the answers before it ended on their own
            self.assertIn(t.get("status"), ("incomplete", "completed"), t)
        self.assertEqual(cut["truncatedMs"], cut["playedMs"], cut)
        self.assertGreater(cut["playedMs"], 0, cut)
        # Equal when the answer arrived slower than it played (a loaded machine, a sanitizer
        # build): all that arrived was heard, and the cut still drops what the server made after.
        self.assertLessEqual(cut["playedMs"], cut["receivedMs"], cut)
        out = js("voxrtPage.events.filter(e => e.dir === 'out').map(e => e.type)")
        self.assertEqual(out.count("conversation.item.truncate"), 1, out[-20:])
        events = js("voxrtPage.events.map(e => e.dir + ' ' + e.type)")
        self.assertEqual(events.count("in conversation.item.truncated"), 1)
        wait(120, lambda: js(f"voxrtPage.turns[{k}].status !== undefined"),
             "the interrupted answer never ended")
        self.assertIn(js(f"voxrtPage.turns[{k}].status"), ("cancelled", "incomplete", "completed"))
        # the conversation goes on: the question that talked over it is answered and played
        wait(240, lambda: js(f"voxrtPage.turns.length >= {k + 2} && voxrtPage.state === 'speaking'"),
             "the next answer never played")
        self.assertGreater(js("voxrtPage.textChars"), 0, "no answer text arrived")
        shown = "".join(e.text for e in driver.find_elements(By.CSS_SELECTOR, ".turn.assistant .text"))
        self.assertGreater(len(shown), 0, "no answer text on the page")
        states = js("window.__states")
        order = [s for s in states if s in ("listening", "thinking", "speaking")]
        for a, b in (("listening", "thinking"), ("thinking", "speaking")):
            self.assertIn(a, order)
            self.assertLess(order.index(a), order.index(b), states)
        self.assertNotIn("in error", events, js("voxrtPage.lastError"))
        self.assertIsNone(js("voxrtPage.lastError"))
        # the stop button ends the answer that plays the same way
        n = js("voxrtPage.turns.length - 1")
        driver.find_element(By.ID, "stop").click()
        wait(60, lambda: js(f"voxrtPage.turns[{n}].interrupted === 'stopped'"), "stop did nothing")
        wait(60, lambda: js("voxrtPage.state === 'listening'"), "not listening after stop")
        wait(60, lambda: js(f"voxrtPage.turns[{n}].status !== undefined"), "the stopped answer never ended")
        stopped = js(f"voxrtPage.turns[{n}]")
        # cut when less was heard than the server holds: less than arrived, or the answer was
        # still being made (cancelled)
        if stopped["playedMs"] < stopped["receivedMs"] or stopped["status"] == "cancelled":
            wait(60, lambda: js(f"voxrtPage.turns[{n}].truncatedMs !== undefined"), "stop did not truncate")
            self.assertEqual(js(f"voxrtPage.turns[{n}].truncatedMs"), stopped["playedMs"])
        print(f"  audio context: {js('voxrtPage.audio')}", file=sys.stderr)
        for t in js("voxrtPage.turns"):
            print(f"  answer {t['responseId']}: {t.get('status')}, heard {t['latencyMs']} ms after the end of "
                  f"speech ({t['afterStoppedMs']} ms after speech_stopped: first audio delta after "
                  f"{t.get('deltaAfterStoppedMs')} ms, then {t.get('pageMs')} ms in the page), played {t.get('playedMs')} of "
                  f"{t.get('receivedMs')} ms received ({t.get('gapMs')} ms of gaps), truncated at {t.get('truncatedMs')} ms",
                  file=sys.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
