#!/usr/bin/python3
"""test/docs/run.py: runs the code blocks of README.md and docs/*.md.

Every fenced block tagged ```sql, ```python or ```sh is executed, in page
order, page by page; each page gets a database of its own (created empty,
dropped afterwards, with every role the page created).  A block tagged
```text output right after a runnable block (only blank lines between) is
that block's expected output and is compared.  Every other fence must carry a
non-runnable tag (text, json, yaml, c, ini, diff): an untagged fence or an
unknown tag is an error, so nothing runnable hides from the runner.

How blocks run:
  sql     one psql session per page (psql -X -q -v ON_ERROR_STOP=1, connected
          as a superuser to the page's database); session state (SET ROLE,
          \\c, psql variables) carries from one sql block to the next.  An
          error fails the block (and a new session starts for the rest of the
          page) unless the block's shown output contains "ERROR:": then the
          block runs with ON_ERROR_STOP off and the error is part of its output.
  python  /usr/bin/python3 on the block, libpq environment (PGHOST, PGPORT,
          PGUSER, PGDATABASE) pointing at the page's database, run in the
          repository's root directory.
  sh      bash (set -eo pipefail) on the block, same environment, PATH starting
          with the PostgreSQL binaries under test.

A page whose sql blocks run CREATE EXTENSION pg_cron gets a database that is
pg_cron's: the runner sets cron.database_name to it and restarts the server
before the page (and points pg_cron back at "postgres" after it).

Output comparison: psql's output (stdout and notices/errors, with the
"psql:<stdin>:N: " prefix removed) or the program's stdout+stderr, trailing
spaces and leading/trailing blank lines ignored.  In the shown output "…"
matches any characters within a line, and a line that is only "…" matches any
number of lines.

Usage: run.py --bindir DIR --datadir DIR [PAGE...]   (defaults to every page)
Prints one line per block and the count of blocks run and passed; exits 1
when any block failed.
"""
import argparse
import glob
import os
import queue
import re
import signal
import subprocess
import sys
import tempfile
import threading

RUNNABLE = {"sql", "python", "sh"}
INERT = {"text", "json", "yaml", "c", "ini", "diff"}
FENCE = re.compile(r"^(\s*)(```+)\s*([^`]*?)\s*$")
TIMEOUT = 120


class Block:
    def __init__(self, page, line, lang, code):
        self.page, self.line, self.lang, self.code = page, line, lang, code
        self.expected = None

    def name(self):
        return "%s:%d %s" % (self.page, self.line, self.lang)


def parse(path, rel):
    """Returns (blocks, errors) of one markdown page."""
    blocks, errors = [], []
    lines = open(path, encoding="utf-8").read().split("\n")
    i = 0
    last = None          # the runnable block an output block may follow
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            if lines[i].strip():
                last = None
            i += 1
            continue
        indent, ticks, info = m.group(1), m.group(2), m.group(3)
        start = i + 1
        j = start
        while j < len(lines) and not (lines[j].strip().startswith(ticks) and lines[j].strip().strip("`") == ""):
            j += 1
        if j == len(lines):
            errors.append("%s:%d: unclosed fence" % (rel, i + 1))
            break
        code = "\n".join(l[len(indent):] if l.startswith(indent) else l for l in lines[start:j]) + "\n"
        words = info.split()
        lang = words[0] if words else ""
        if lang in RUNNABLE and len(words) == 1:
            last = Block(rel, i + 1, lang, code)
            blocks.append(last)
        elif lang == "text" and words[1:] == ["output"]:
            if last is None or last.expected is not None:
                errors.append("%s:%d: ```text output does not follow a runnable block" % (rel, i + 1))
            else:
                last.expected = code
            last = None
        elif lang in INERT and len(words) == 1:
            last = None
        else:
            errors.append("%s:%d: fence tag %r: use sql, python or sh (run), text output (shown output) "
                          "or one of %s (not run)" % (rel, i + 1, info, ", ".join(sorted(INERT))))
            last = None
        i = j + 1
    return blocks, errors


def normalise(text):
    lines = [re.sub(r"^psql:[^\n:]*:\d+: ", "", l).rstrip() for l in text.split("\n")]
    while lines and not lines[0]:
        lines.pop(0)
    while lines and not lines[-1]:
        lines.pop()
    return lines


def matches(expected, actual):
    pattern = ""
    for l in expected:
        if l == "…":
            pattern += r"(?:[^\n]*\n)*?"
        else:
            pattern += "[^\n]*?".join(re.escape(part) for part in l.split("…")) + r"\n"
    return re.fullmatch(pattern, "".join(l + "\n" for l in actual)) is not None


class Psql:
    """One psql session fed block by block; output is read up to a marker."""

    def __init__(self, bindir, env, db):
        self.n = 0
        self.proc = subprocess.Popen(
            ["stdbuf", "-oL", os.path.join(bindir, "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", db],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            env=env, text=True, bufsize=1)
        self.lines = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for l in self.proc.stdout:
            self.lines.put(l)
        self.lines.put(None)

    def run(self, code, errors_shown):
        """Returns (ok, output): ok is False when psql stopped on an error."""
        self.n += 1
        marker = "@@doctest-%d@@" % self.n
        text = code
        if errors_shown:
            text = "\\set ON_ERROR_STOP 0\n" + text + "\n\\set ON_ERROR_STOP 1\n"
        # ";" sends what a block left unterminated (an error, not a leak into
        # the next block); on an empty query buffer it does nothing.
        text += "\n;\n\\echo %s\n" % marker
        try:
            self.proc.stdin.write(text)
            self.proc.stdin.flush()
        except BrokenPipeError:
            return False, "(psql is gone)\n"
        out = []
        while True:
            try:
                l = self.lines.get(timeout=TIMEOUT)
            except queue.Empty:
                self.close()
                return False, "".join(out) + "(timed out after %ds)\n" % TIMEOUT
            if l is None:
                return False, "".join(out)
            if l.rstrip("\n") == marker:
                return True, "".join(out)
            out.append(l)

    def alive(self):
        return self.proc.poll() is None

    def close(self):
        try:
            self.proc.stdin.close()
        except Exception:
            pass
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def program(block, env, repo):
    with tempfile.NamedTemporaryFile("w", suffix="." + block.lang, delete=False) as f:
        if block.lang == "sh":
            f.write("set -eo pipefail\n")
        f.write(block.code)
        path = f.name
    os.chmod(path, 0o644)
    cmd = ["/usr/bin/python3", path] if block.lang == "python" else ["bash", path]
    # a session of its own, so that a timeout ends the block's children too
    p = subprocess.Popen(cmd, cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, start_new_session=True)
    try:
        out, _ = p.communicate(timeout=TIMEOUT)
        return p.returncode == 0, out + ("" if p.returncode == 0 else "(exit status %d)\n" % p.returncode)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, _ = p.communicate()
        return False, out + "(timed out after %ds)\n" % TIMEOUT
    finally:
        os.unlink(path)


class Server:
    def __init__(self, bindir, datadir, env):
        self.bindir, self.datadir, self.env = bindir, datadir, env

    def sql(self, query, db="postgres"):
        p = subprocess.run([os.path.join(self.bindir, "psql"), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1",
                            "-d", db, "-c", query], env=self.env, capture_output=True, text=True)
        if p.returncode != 0:
            raise RuntimeError("%s: %s" % (query, p.stderr.strip()))
        return p.stdout

    def restart_for_cron(self, db):
        self.sql("ALTER SYSTEM SET cron.database_name = '%s'" % db)
        cmd = [os.path.join(self.bindir, "pg_ctl"), "-D", os.path.join(self.datadir, "pgdata"),
               "-l", os.path.join(self.datadir, "server.log"), "-m", "fast", "-w", "restart"]
        if os.getuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--"] + cmd
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def run_page(server, blocks, repo, bindir, env0, rel):
    results = []
    db = "doc_" + re.sub(r"[^a-z0-9]+", "_", rel.lower().replace(".md", "").replace("docs/", ""))
    cron = any(b.lang == "sql" and re.search(r"create\s+extension\s+(if\s+not\s+exists\s+)?pg_cron", b.code, re.I)
               for b in blocks)
    roles = set(server.sql("SELECT rolname FROM pg_roles").split())
    server.sql("DROP DATABASE IF EXISTS %s WITH (FORCE)" % db)
    server.sql("CREATE DATABASE %s TEMPLATE template0" % db)
    if cron:
        server.restart_for_cron(db)
    # WVAL_DOCS_RUNNING makes scripts/lib.sh refuse to start a suite, demo or
    # benchmark from a snippet (they belong in ```text)
    env = dict(env0, PGDATABASE=db, PATH=bindir + ":" + env0.get("PATH", "/usr/bin:/bin"), WVAL_DOCS_RUNNING="1")
    psql = None
    try:
        for b in blocks:
            expected = normalise(b.expected) if b.expected is not None else None
            if b.lang == "sql":
                if psql is None or not psql.alive():
                    psql = Psql(bindir, env, db)
                ok, out = psql.run(b.code, expected is not None and any("ERROR:" in l for l in expected))
                if not ok:          # the rest of the page gets a new session
                    psql.close()
                    psql = None
            else:
                ok, out = program(b, env, repo)
            actual = normalise(out)
            if ok and expected is not None and not matches(expected, actual):
                ok = False
                out = "shown output:\n%s\nactual output:\n%s\n" % ("\n".join(expected), "\n".join(actual))
            results.append((b, ok, out))
    finally:
        if psql is not None:
            psql.close()
        server.sql("DROP DATABASE IF EXISTS %s WITH (FORCE)" % db)
        if cron:
            server.restart_for_cron("postgres")
        for r in sorted(set(server.sql("SELECT rolname FROM pg_roles").split()) - roles):
            server.sql('DROP ROLE "%s"' % r)
    return results


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bindir", required=True)
    ap.add_argument("--datadir", required=True, help="the directory start_cluster was given")
    ap.add_argument("--repo", default=os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
    ap.add_argument("pages", nargs="*")
    a = ap.parse_args()
    pages = a.pages or ["README.md"] + sorted(os.path.relpath(p, a.repo) for p in glob.glob(os.path.join(a.repo, "docs", "*.md")))
    env0 = dict(os.environ)
    server = Server(a.bindir, a.datadir, env0)
    run = passed = 0
    failures = []
    for rel in pages:
        blocks, errors = parse(os.path.join(a.repo, rel), rel)
        for e in errors:
            print("not ok - " + e)
            failures.append(e)
        if not blocks:
            continue
        for b, ok, out in run_page(server, blocks, a.repo, a.bindir, env0, rel):
            run += 1
            passed += ok
            print("%s %d - %s%s" % ("ok" if ok else "not ok", run, b.name(), " (output compared)" if b.expected is not None else ""))
            if not ok:
                failures.append(b.name())
                print("".join("    " + l + "\n" for l in b.code.rstrip("\n").split("\n")))
                print("".join("    # " + l + "\n" for l in out.rstrip("\n").split("\n")))
    print("docs: %d snippets run, %d passed, %d failed; %d fence errors" % (run, passed, run - passed, len(failures) - (run - passed)))
    sys.exit(0 if not failures and run > 0 else 1)


if __name__ == "__main__":
    main()
