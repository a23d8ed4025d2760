#!/usr/bin/env python3
"""Size limits of the architecture (issue 13): no source file over ~600 lines
and no function over ~120 lines outside tests. Counts the lines of each
`fn` body by brace matching (strings, chars and comments skipped), and file
lengths without their `#[cfg(test)] mod tests { ... }` block.

    python3 scripts/code-size.py [--max-file 600] [--max-fn 120] [paths...]

Prints the offenders; exit 1 if there are any."""
import re, sys, pathlib, argparse

def strip(src):
    """Source with string/char literals and comments blanked (newlines kept)."""
    out = []; i = 0; n = len(src)
    while i < n:
        c = src[i]
        if src.startswith('//', i):
            j = src.find('\n', i); j = n if j < 0 else j
            out.append(' ' * (j - i)); i = j; continue
        if src.startswith('/*', i):
            depth = 0; j = i
            while j < n:
                if src.startswith('/*', j): depth += 1; j += 2; continue
                if src.startswith('*/', j):
                    depth -= 1; j += 2
                    if depth == 0: break
                    continue
                j += 1
            out.append(re.sub(r'[^\n]', ' ', src[i:j])); i = j; continue
        m = re.match(r'(b?r)(#*)"', src[i:i+260])
        if m and (i == 0 or not (src[i-1].isalnum() or src[i-1] == '_')):
            end = '"' + m.group(2); j = src.find(end, i + len(m.group(0)))
            j = n if j < 0 else j + len(end)
            out.append(re.sub(r'[^\n]', ' ', src[i:j])); i = j; continue
        if c == '"':
            j = i + 1
            while j < n and src[j] != '"':
                j += 2 if src[j] == '\\' else 1
            j += 1
            out.append(re.sub(r'[^\n]', ' ', src[i:j])); i = j; continue
        if c == "'":
            m = re.match(r"'(\\.|\\u\{[0-9a-fA-F]+\}|\\x..|[^\\'])'", src[i:i+12])
            if m:
                out.append(' ' * len(m.group(0))); i += len(m.group(0)); continue
        out.append(c); i += 1
    return ''.join(out)

def test_spans(s):
    """Line ranges of `#[cfg(test)] mod x { ... }` blocks."""
    spans = []
    for m in re.finditer(r'#\[cfg\(test\)\]\s*(pub(\([^)]*\))?\s+)?mod\s+\w+\s*\{', s):
        depth = 0; j = m.end() - 1
        while j < len(s):
            if s[j] == '{': depth += 1
            elif s[j] == '}':
                depth -= 1
                if depth == 0: break
            j += 1
        spans.append((s.count('\n', 0, m.start()) + 1, s.count('\n', 0, j) + 1))
    return spans

def functions(s):
    for m in re.finditer(r'\bfn\s+(\w+)', s):
        j = m.end(); depth_paren = 0
        while j < len(s):
            ch = s[j]
            if ch in '([<': depth_paren += 1
            elif ch in ')]>': depth_paren -= 1
            elif ch == ';' and depth_paren <= 0: j = -1; break
            elif ch == '{' and depth_paren <= 0: break
            j += 1
        if j < 0 or j >= len(s): continue
        depth = 0; k = j
        while k < len(s):
            if s[k] == '{': depth += 1
            elif s[k] == '}':
                depth -= 1
                if depth == 0: break
            k += 1
        a = s.count('\n', 0, m.start()) + 1; b = s.count('\n', 0, k) + 1
        yield m.group(1), a, b

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--max-file', type=int, default=600)
    ap.add_argument('--max-fn', type=int, default=120)
    ap.add_argument('paths', nargs='*', default=['crates'])
    a = ap.parse_args()
    bad = 0
    files = []
    for p in a.paths:
        p = pathlib.Path(p)
        files += [p] if p.is_file() else sorted(p.rglob('*.rs'))
    for f in files:
        parts = f.parts
        if 'tests' in parts or 'benches' in parts or 'examples' in parts or 'target' in parts:
            continue
        if f.name == 'tests.rs' or f.name.endswith('_tests.rs'):
            continue
        src = f.read_text()
        s = strip(src)
        spans = test_spans(s)
        in_test = lambda ln: any(x <= ln <= y for x, y in spans)
        lines = src.count('\n') - sum(y - x + 1 for x, y in spans)
        if lines > a.max_file:
            print(f'{f}: {lines} lines (outside tests) > {a.max_file}'); bad += 1
        for name, x, y in functions(s):
            if in_test(x): continue
            if y - x + 1 > a.max_fn:
                print(f'{f}:{x}: fn {name}: {y - x + 1} lines > {a.max_fn}'); bad += 1
    sys.exit(1 if bad else 0)

main()
