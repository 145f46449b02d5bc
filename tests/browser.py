"""A real headless Chromium driven through the DevTools protocol over a pipe (--remote-debugging-pipe:
commands in on fd 3, answers out on fd 4, NUL-separated JSON): no websocket library, no network."""

import base64
import json
import os
import shutil
import subprocess
import time


class Browser:
    """Browser().open(url); .eval(js) -> value; .wait_for(js); .screenshot(css_selector) -> png bytes."""

    def __init__(self, width=1200, height=900):
        binary = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
        if binary is None:
            raise FileNotFoundError("no chromium: apt-get install chromium (make test installs it)")
        to_chrome, self._out = os.pipe()
        self._in, from_chrome = os.pipe()

        def pipes():
            os.dup2(to_chrome, 3)
            os.dup2(from_chrome, 4)

        self.process = subprocess.Popen(
            [
                binary,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--remote-debugging-pipe",
                "--no-first-run",
                f"--window-size={width},{height}",
                "about:blank",
            ],
            preexec_fn=pipes,
            pass_fds=(3, 4),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_chrome)
        os.close(from_chrome)
        self._id, self._buffer, self.events = 0, b"", []
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.call("Page.enable", session=True)
        self.call("Runtime.enable", session=True)

    def _read(self):
        while b"\0" not in self._buffer:
            chunk = os.read(self._in, 1 << 16)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def call(self, method, session=False, **params):
        self._id += 1
        message = {"id": self._id, "method": method, "params": params}
        if session:
            message["sessionId"] = self.session
        os.write(self._out, json.dumps(message).encode() + b"\0")
        while True:
            answer = self._read()
            if answer.get("id") == self._id:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                return answer["result"]
            self.events.append(answer)

    def open(self, url, timeout=30):
        self.events.clear()
        self.call("Page.navigate", session=True, url=url)
        self.wait_for("document.readyState === 'complete'", timeout)

    def eval(self, expression):
        result = self.call("Runtime.evaluate", session=True, expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression, timeout=30):
        end = time.time() + timeout
        while not self.eval(f"!!({expression})"):
            if time.time() > end:
                raise TimeoutError(expression)
            time.sleep(0.1)

    def screenshot(self, selector):
        """PNG bytes of the element (page coordinates; rendered beyond the viewport, no scrolling)."""
        rect = self.eval(
            f"(() => {{ const r = document.querySelector({json.dumps(selector)}).getBoundingClientRect(); "
            "return [r.x + scrollX, r.y + scrollY, r.width, r.height]; })()"
        )
        x, y, width, height = rect
        shot = self.call(
            "Page.captureScreenshot",
            session=True,
            format="png",
            captureBeyondViewport=True,
            clip={"x": x, "y": y, "width": width, "height": height, "scale": 1},
        )
        return base64.b64decode(shot["data"])

    def console_errors(self):
        return [e for e in self.events if e.get("method") == "Runtime.exceptionThrown"]

    def close(self):
        self.process.kill()
        self.process.wait()
        os.close(self._in)
        os.close(self._out)
