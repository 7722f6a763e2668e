"""Split a PostgreSQL script into statements (quotes, dollar quotes, comments aware)."""
import re

_DOLLAR = re.compile(r'\$([A-Za-z_][A-Za-z_0-9]*)?\$')


def split(text):
    """Return the top-level statements of TEXT, each without its trailing ';'
    and without leading comments and blank lines."""
    out, start, i, n = [], 0, 0, len(text)
    while i < n:
        c = text[i]
        if c == '-' and text.startswith('--', i):
            j = text.find('\n', i)
            i = n if j < 0 else j + 1
        elif c == '/' and text.startswith('/*', i):
            depth, i = 1, i + 2
            while i < n and depth:
                if text.startswith('/*', i):
                    depth, i = depth + 1, i + 2
                elif text.startswith('*/', i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
        elif c == "'":
            esc = i > 0 and text[i - 1] in 'eE' and (i < 2 or not (text[i - 2].isalnum() or text[i - 2] == '_'))
            i += 1
            while i < n:
                if esc and text[i] == '\\':
                    i += 2
                    continue
                if text[i] == "'":
                    if text.startswith("''", i):
                        i += 2
                        continue
                    break
                i += 1
            i += 1
        elif c == '"':
            j = text.find('"', i + 1)
            i = n if j < 0 else j + 1
        elif c == '$' and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == '_')):
            m = _DOLLAR.match(text, i)
            if m:
                j = text.find(m.group(0), m.end())
                if j < 0:
                    raise ValueError('unterminated dollar quote %s' % m.group(0))
                i = j + len(m.group(0))
            else:
                i += 1
        elif c == '\\' and (i == 0 or text[i - 1] == '\n'):
            # psql meta-command line (the \echo ... \quit guard): skip it
            j = text.find('\n', i)
            i = n if j < 0 else j + 1
            start = i
        elif c == ';':
            out.append(text[start:i])
            i += 1
            start = i
        else:
            i += 1
    if text[start:].strip():
        out.append(text[start:])
    return [s for s in (strip_leading(s) for s in out) if s]


def strip_leading(stmt):
    """STMT without leading blank lines and comments (trailing spaces kept off)."""
    s = stmt
    while True:
        s = s.lstrip()
        if s.startswith('--'):
            j = s.find('\n')
            s = '' if j < 0 else s[j + 1:]
        elif s.startswith('/*'):
            j = s.find('*/')
            s = s[j + 2:]
        else:
            return s.rstrip()
