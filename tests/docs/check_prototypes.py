#!/usr/bin/env python3
"""check_prototypes.py HEADER MANDIR — the man pages and distc.h agree:
every function prototype in a SYNOPSIS section matches the header's
declaration of that function (types and parameter names, whitespace
aside), and every public function of the header appears in some SYNOPSIS.
Prints one line per finding and `N passed, M failed`."""
import os
import re
import shlex
import sys

header, mandir = sys.argv[1], sys.argv[2]
passed = failed = 0


def check(cond, what):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print('FAIL', what)


def norm(proto):
    p = re.sub(r'\s+', ' ', proto).strip()
    p = re.sub(r'\s*([(),*;])\s*', r'\1', p)   # no spaces around punctuation
    p = re.sub(r'(\w)\*', r'\1 *', p)           # "int *x", "char ***argv"
    return p


def header_protos(text):
    text = re.sub(r'/\*.*?\*/', ' ', text, flags=re.S)
    text = re.sub(r'^\s*#.*?(?<!\\)$', ' ', text, flags=re.M | re.S)
    out = {}
    for m in re.finditer(r'DISTC_API\s+([^;{]*?\))\s*(__attribute__\(\(.*?\)\))?\s*;',
                         text, re.S):
        p = m.group(1)
        name = re.search(r'(distc_\w+)\s*\(', p).group(1)
        out[name] = norm(p + ';')
    return out


def roff_args(line):
    """The text a .B/.BI/.BR/.I line prints: its arguments joined."""
    macro, _, rest = line.partition(' ')
    rest = rest.replace('\\-', '-').replace('\\(dq', '"').replace('\\e', '\\')
    try:
        args = shlex.split(rest, posix=True)
    except ValueError:
        args = rest.split()
    return ''.join(args) if macro in ('.BI', '.BR', '.IB', '.RB', '.IR', '.RI') \
        else ' '.join(args)


def man_protos(path):
    text = open(path).read()
    m = re.search(r'^\.SH SYNOPSIS\n(.*?)^\.SH ', text, re.S | re.M)
    if not m:
        return []
    lines = [roff_args(l) for l in m.group(1).splitlines()
             if re.match(r'\.(B|BI|BR|I|IB|RB|IR|RI) ', l)]
    protos, cur = [], ''
    for l in lines:
        if not cur and not re.match(r'[\w ]+[ *]distc_\w+\(', l):
            continue
        cur += ' ' + l
        if cur.rstrip().endswith(';'):
            protos.append(cur.strip())
            cur = ''
    return protos


decl = header_protos(open(header).read())
check(len(decl) > 50, f'found only {len(decl)} prototypes in {header}')
documented = {}
for page in sorted(os.listdir(mandir)):
    for p in man_protos(os.path.join(mandir, page)):
        name = re.search(r'(distc_\w+)\s*\(', p).group(1)
        documented.setdefault(name, page)
        want = decl.get(name)
        check(want is not None, f'{page}: {name} is not declared in distc.h')
        if want is not None:
            got = norm(p)
            check(got == want, f'{page}: {name}:\n  man:      {got}\n  distc.h:  {want}')
for name in sorted(decl):
    check(name in documented, f'{name} (distc.h) is in no SYNOPSIS of {mandir}')
print(f'{passed} passed, {failed} failed')
sys.exit(1 if failed else 0)
