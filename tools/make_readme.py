"""Write README.md from nbs/index.ipynb (nbdev-readme needs Quarto, which this project cannot assume).

Markdown cells are copied; code cells become ```python blocks, with their text outputs; cells marked
`#| hide` and nbdev directive lines are dropped; images stay on the docs site. `tests/test_readme.py`
checks that README.md is up to date: run `python tools/make_readme.py` after editing the index.
"""
import json, re, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_directive = re.compile(r'^\s*#\s*\|')

def _text(x): return ''.join(x) if isinstance(x, list) else x

def _outputs(cell):
    res = []
    for o in cell.get('outputs', []):
        if o['output_type'] == 'stream' and o.get('name') == 'stdout': res.append(_text(o['text']))
        elif o['output_type'] in ('execute_result', 'display_data'):
            d = o.get('data', {})
            if any(k.startswith('image/') or k == 'text/html' for k in d): continue  # tables and figures live on the docs site
            if 'text/markdown' in d: res.append(_text(d['text/markdown']))
            elif 'text/plain' in d: res.append(_text(d['text/plain']))
    return [r.rstrip('\n') for r in res if r.strip()]

def render_readme(nb_path=ROOT/'nbs'/'index.ipynb'):
    "The README text for the notebook at `nb_path`."
    cells, parts = json.loads(Path(nb_path).read_text())['cells'], []
    for c in cells:
        src = _text(c['source'])
        if c['cell_type'] == 'markdown': parts.append(src.strip()); continue
        if c['cell_type'] != 'code' or re.search(r'^\s*#\s*\|\s*hide\b', src, re.M): continue
        code = '\n'.join(l for l in src.splitlines() if not _directive.match(l)).strip()
        if code: parts.append(f"```python\n{code}\n```")
        parts += [f"```\n{o}\n```" for o in _outputs(c)]
    return "<!-- generated from nbs/index.ipynb by tools/make_readme.py: edit the notebook, not this file -->\n\n" + '\n\n'.join(parts) + '\n'

if __name__ == '__main__':
    (ROOT/'README.md').write_text(render_readme())
    print('README.md written', file=sys.stderr)
