#!/usr/bin/env python3
"""Loads HTML reports in headless Chromium and checks what a reader would see.

Usage: reports_browser.py OUTDIR NAME=FILE:CHART_ID,CHART_ID... ...

For each report: opens FILE (a file:// URL) in a fresh tab of one headless
Chromium (Debian's /usr/bin/chromium) driven over the Chrome DevTools
Protocol (python3-websocket), with every http(s) request blocked by the
Fetch domain and name resolution disabled. It fails (exit 1) on:

- any console error, uncaught exception or browser log entry of level error;
- any request other than the report's own file (an external asset, an image,
  a font, a frame: a self-contained report makes none);
- a chart id of the list missing from the DOM, a chart without its <svg>,
  a "not enough data" placeholder, or any <script>, <img>, <iframe>, <link>
  or <object> element in the page;
- the page's text lacking an expected string (--text NAME=STRING, e.g. a
  strategy name with markup, which must show as text).

It saves a full-page screenshot OUTDIR/NAME.png and prints one line per
report with the number of <svg> elements and the charts found.
"""

import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import websocket

CHROMIUM = os.environ.get("WVAL_CHROMIUM", "/usr/bin/chromium")
TIMEOUT = 30.0


class Browser:
    """One headless Chromium and a flat CDP session per tab."""

    def __init__(self):
        self.profile = tempfile.mkdtemp(prefix="wval-chromium-")
        args = [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu",
                "--no-first-run", "--no-default-browser-check", "--disable-extensions",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--disable-default-apps", "--metrics-recording-only",
                "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9",
                "--remote-debugging-port=0", "--remote-allow-origins=*",
                "--user-data-dir=" + self.profile, "about:blank"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        port_file = os.path.join(self.profile, "DevToolsActivePort")
        deadline = time.time() + TIMEOUT
        while not (os.path.exists(port_file) and len(open(port_file).read().split("\n")) >= 2):
            if self.proc.poll() is not None or time.time() > deadline:
                raise SystemExit("FAIL: chromium did not start: " + self.proc.stderr.read().decode()[-2000:])
            time.sleep(0.05)
        port, path = open(port_file).read().split("\n")[:2]
        self.ws = websocket.create_connection("ws://127.0.0.1:%s%s" % (port, path), timeout=TIMEOUT)
        self.next_id = 0
        self.events = []

    def send(self, method, params=None, session=None):
        """Sends a command and returns its result; events that arrive meanwhile are queued."""
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        self.ws.send(json.dumps(msg))
        while True:
            m = json.loads(self.ws.recv())
            if m.get("id") == self.next_id:
                if "error" in m:
                    raise SystemExit("FAIL: %s: %s" % (method, m["error"]))
                return m.get("result", {})
            if "method" in m:
                self.events.append(m)

    def wait_event(self, method, session, handle):
        """Processes events (queued first) until one named method arrives for the session."""
        deadline = time.time() + TIMEOUT
        while True:
            while self.events:
                m = self.events.pop(0)
                handle(m)
                if m.get("method") == method and m.get("sessionId") == session:
                    return m
            if time.time() > deadline:
                raise SystemExit("FAIL: timed out waiting for " + method)
            self.events.append(json.loads(self.ws.recv()))

    def close(self):
        try:
            self.send("Browser.close")
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.profile, ignore_errors=True)


CHECK_JS = r"""
(() => {
  const ids = %s;
  const found = [], missing = [], empty = [];
  for (const id of ids) {
    const el = document.getElementById('chart-' + id);
    if (!el) { missing.push(id); continue; }
    if (el.querySelector('svg') === null) { empty.push(id); continue; }
    const box = el.querySelector('svg').getBoundingClientRect();
    if (box.width < 100 || box.height < 100) { empty.push(id); continue; }
    found.push(id);
  }
  return JSON.stringify({
    svgs: document.querySelectorAll('svg').length,
    found: found, missing: missing, empty: empty,
    placeholders: document.querySelectorAll('.wval-chart-missing').length,
    forbidden: document.querySelectorAll('script, img, iframe, link, object, embed').length,
    refs: Array.from(document.querySelectorAll('figure[id^="chart-"]')).map(
      f => f.id + ':' + f.querySelectorAll('line.ref').length + ':' + f.querySelectorAll('line.mark').length),
    text: document.body.innerText,
    height: Math.ceil(document.documentElement.scrollHeight)
  });
})()
"""


def check(browser, outdir, name, path, charts, texts):
    """Loads one report, returns a list of failures."""
    failures = []
    url = "file://" + os.path.abspath(path)
    target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]

    def handle(m):
        if m.get("sessionId") != session:
            return
        method, p = m.get("method"), m.get("params", {})
        if method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            failures.append("console %s: %s" % (p["type"], json.dumps(p.get("args"))[:300]))
        elif method == "Runtime.exceptionThrown":
            failures.append("exception: " + json.dumps(p.get("exceptionDetails"))[:300])
        elif method == "Log.entryAdded" and p["entry"].get("level") == "error":
            failures.append("log error: %s %s" % (p["entry"].get("text"), p["entry"].get("url", "")))
        elif method == "Network.requestWillBeSent":
            if p["request"]["url"] != url:
                failures.append("request: " + p["request"]["url"][:200])
        elif method == "Fetch.requestPaused":
            failures.append("blocked request: " + p["request"]["url"][:200])
            browser.ws.send(json.dumps({"id": 0, "sessionId": session, "method": "Fetch.failRequest",
                                        "params": {"requestId": p["requestId"], "errorReason": "BlockedByClient"}}))

    for domain in ("Runtime", "Log", "Network", "Page"):
        browser.send(domain + ".enable", session=session)
    browser.send("Fetch.enable", {"patterns": [{"urlPattern": "http*"}, {"urlPattern": "ws*"}]}, session=session)
    browser.send("Emulation.setDeviceMetricsOverride",
                 {"width": 1000, "height": 800, "deviceScaleFactor": 1, "mobile": False}, session=session)
    browser.send("Page.navigate", {"url": url}, session=session)
    browser.wait_event("Page.loadEventFired", session, handle)

    res = browser.send("Runtime.evaluate", {"expression": CHECK_JS % json.dumps(charts), "returnByValue": True},
                       session=session)
    state = json.loads(res["result"]["value"])
    # events raised while evaluating
    for m in browser.events:
        handle(m)
    browser.events = [m for m in browser.events if m.get("sessionId") != session]

    if state["missing"]:
        failures.append("missing charts: " + ", ".join(state["missing"]))
    if state["empty"]:
        failures.append("charts without a drawn svg: " + ", ".join(state["empty"]))
    if state["placeholders"]:
        failures.append("%d 'not enough data' placeholders" % state["placeholders"])
    if state["forbidden"]:
        failures.append("%d script/img/iframe/link/object elements" % state["forbidden"])
    if state["svgs"] < len(charts):
        failures.append("%d <svg> elements, expected at least %d" % (state["svgs"], len(charts)))
    for t in texts:
        if t not in state["text"]:
            failures.append("page text lacks %r" % t)

    height = min(max(state["height"], 800), 12000)
    browser.send("Emulation.setDeviceMetricsOverride",
                 {"width": 1000, "height": height, "deviceScaleFactor": 1, "mobile": False}, session=session)
    shot = browser.send("Page.captureScreenshot", {"format": "png"}, session=session)
    png = os.path.join(outdir, name + ".png")
    with open(png, "wb") as f:
        f.write(base64.b64decode(shot["data"]))
    browser.send("Target.closeTarget", {"targetId": target})
    print("%s: %d svg, charts %s, reference lines/marks %s, screenshot %s (%d px)"
          % (name, state["svgs"], ",".join(state["found"]), " ".join(state["refs"]), png, height))
    return failures


def main():
    outdir = sys.argv[1]
    reports, texts = [], {}
    args = sys.argv[2:]
    while args:
        a = args.pop(0)
        if a == "--text":
            n, t = args.pop(0).split("=", 1)
            texts.setdefault(n, []).append(t)
            continue
        name, rest = a.split("=", 1)
        path, ids = rest.rsplit(":", 1)
        reports.append((name, path, [i for i in ids.split(",") if i]))
    browser = Browser()
    failed = False
    try:
        for name, path, charts in reports:
            for f in check(browser, outdir, name, path, charts, texts.get(name, [])):
                print("FAIL: %s: %s" % (name, f))
                failed = True
    finally:
        browser.close()
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
