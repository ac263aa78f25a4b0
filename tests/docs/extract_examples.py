#!/usr/bin/env python3
"""extract_examples.py SRCDIR OUTDIR — writes every complete C program shown
in README.md (```c blocks) and in the man pages (.EX blocks that hold an
`int main`) to OUTDIR as separate files, one per example, named after
where it came from, so a test can build them exactly as printed."""
import os
import re
import sys

src, out = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
n = 0


def roff_to_c(text):
    # The escapes the pages use inside .EX: \e is a backslash, \- a minus,
    # \(aq a quote; \& is a zero-width break.  Order matters for \e.
    text = text.replace('\\(aq', "'").replace('\\-', '-').replace('\\&', '')
    text = text.replace('\\(dq', '"').replace('\\e', '\\')
    return text


def emit(name, code):
    global n
    with open(os.path.join(out, name), 'w') as f:
        f.write(code)
    print(name)
    n += 1


readme = open(os.path.join(src, 'README.md')).read()
for i, m in enumerate(re.finditer(r'^```c\n(.*?)^```', readme, re.S | re.M)):
    emit(f'readme_{i + 1}.c', m.group(1))

mandir = os.path.join(src, 'man')
for page in sorted(os.listdir(mandir)):
    text = open(os.path.join(mandir, page)).read()
    blocks = re.findall(r'^\.EX\n(.*?)^\.EE', text, re.S | re.M)
    for i, b in enumerate(blocks):
        if not re.search(r'^int main\(', b, re.M):
            continue
        emit(f'man_{page.replace(".", "_")}_{i + 1}.c', roff_to_c(b))

if n == 0:
    sys.exit('no examples found: the patterns above no longer match')
