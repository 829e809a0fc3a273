"""The docs site, up to the point where `nbdev-docs` hands over to Quarto (which cannot be installed here).

nbdev's notebook processing (`nbdev.serve.proc_nbs`) runs on a temporary copy of the project; the processed
notebooks render to HTML with `jupyter nbconvert`, and headless Chromium (Debian `chromium`) opens the home
page and one tutorial and finds their figures drawn and the quick-start code on the page."""
import ast, html, json, os, re, shutil, subprocess, sys
from pathlib import Path
import pytest, yaml
from fastcore.nbio import read_nb
from nbdev.config import get_config
from nbdev.doclinks import nbglob
from nbdev.quarto import _nbdev_yml

ROOT = Path(__file__).resolve().parents[1]
NBS, LIB = ROOT/'nbs', ROOT/'gan_conditioning'
TUTORIAL = 'tutorials/pacgan.ipynb'  # the tutorial the browser opens besides the home page
CHROMIUM = Path('/usr/bin/chromium')
HIDDEN = {'hide', 'export', 'exporti', 'default_exp'}  # directives whose cells nbdev drops from the docs
NOT_EXAMPLES = HIDDEN | {'exports'}  # cells that define names rather than use them
ENV = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1', MPLBACKEND='Agg', PYTHONWARNINGS='ignore')

def _notebooks():
    "Notebooks under nbs/ the way `proc_nbs` finds them, as paths relative to nbs/"
    return sorted(str(p.relative_to(NBS)) for p in nbglob(NBS, func=Path, file_glob='*.ipynb'))

def _body(src):
    "A cell's source without its `#|` directive lines"
    return '\n'.join(l for l in src.splitlines() if not re.match(r'\s*#\|', l)).strip()

def _code_cells(nb):
    return [c for c in nb.cells if c.cell_type == 'code']

# ---------------------------------------------------------------------------- processing
# `proc_nbs` stops at the first notebook that fails: process the rest one at a time, in the same process, for
# every failure's message (nbdev's names the notebook, the cell and the error)
PROC = """
import json, sys
from pathlib import Path
from nbdev.serve import proc_nbs
try: proc_nbs(n_workers=int(sys.argv[1]))
except Exception: pass
errors = {}
for nb in json.loads(sys.argv[2]):
    if Path('_proc', nb).exists(): continue
    try: proc_nbs(n_workers=0, file_glob=Path(nb).name)
    except Exception as e: errors[nb] = f'{type(e).__name__}: {e}'
Path('proc_errors.json').write_text(json.dumps(errors))
"""

def _short(msg, n=6):
    "An error message with a long cell source cut to its first and last lines"
    lines = msg.strip().splitlines()
    return '\n'.join(lines if len(lines) <= 2*n else lines[:n] + ['    ...'] + lines[-n:])

@pytest.fixture(scope='module')
def processed(tmp_path_factory):
    "Run `proc_nbs` on a copy of the project (it writes to `<project>/_proc`); returns (_proc, {notebook: error})"
    project = tmp_path_factory.mktemp('project')
    shutil.copy2(ROOT/'pyproject.toml', project)
    shutil.copytree(NBS, project/'nbs', ignore=shutil.ignore_patterns('_proc', '_docs', '.ipynb_checkpoints'))
    res = subprocess.run([sys.executable, '-c', PROC, str(min(2, os.cpu_count())), json.dumps(_notebooks())],
                         cwd=project, env=ENV, capture_output=True, text=True, timeout=900)
    assert (project/'proc_errors.json').exists(), f'processing crashed:\n{res.stderr[-3000:]}'
    errors = json.loads((project/'proc_errors.json').read_text())
    return project/'_proc', {k: _short(v) for k, v in errors.items()}

def test_proc_nbs_processes_every_notebook(processed):
    "nbdev's docs processing (show_doc cells added and executed, directives applied) succeeds on every notebook"
    proc, errors = processed
    assert not errors, 'nbdev.serve.proc_nbs failed on:\n\n' + '\n\n'.join(f'{k}:\n{v}' for k, v in errors.items())
    nbs = _notebooks()
    assert 'index.ipynb' in nbs and TUTORIAL in nbs, f'{TUTORIAL} is missing from nbs/'
    for nb in nbs: assert (proc/nb).exists(), f'{nb} was not processed'

def test_processed_notebooks_are_clean(processed):
    "No error outputs or tracebacks; `#| hide` and `#| export` cells are gone, their sources nowhere in the docs"
    proc, _ = processed
    problems = []
    for nb in _notebooks():
        if not (proc/nb).exists(): continue  # reported by test_proc_nbs_processes_every_notebook
        src, out = read_nb(NBS/nb), read_nb(proc/nb)
        shown = {_body(c.source) for c in _code_cells(out)}
        for c in _code_cells(out):
            if HIDDEN & set(c.directives): problems.append(f'{nb}: a {set(c.directives)} cell is still there: {c.source[:80]!r}')
            for o in c.get('outputs', []):
                if o.output_type == 'error' or 'Traceback (most recent call last)' in str(o.get('text', '')):
                    problems.append(f'{nb}: error output in cell {c.source[:80]!r}: {o.get("ename", "")} {o.get("evalue", "")}')
        for c in _code_cells(src):
            if HIDDEN & set(c.directives) and _body(c.source) and _body(c.source) in shown:
                problems.append(f'{nb}: a hidden cell is in the docs: {c.source[:80]!r}')
    assert not problems, '\n'.join(problems)

def _imports_and_code(src):
    "Does a cell mix top-level imports with other statements?"
    src = '\n'.join(l for l in src.splitlines() if not re.match(r'\s*[%!]', l))
    try: body = ast.parse(src).body
    except SyntaxError: return False
    imports = [n for n in body if isinstance(n, (ast.Import, ast.ImportFrom))]
    return 0 < len(imports) < len(body)

def test_docs_build_reruns_no_example():
    "The docs build executes every cell with an import (in notebooks with exports): visible examples keep imports apart"
    mixed = []
    for nb in _notebooks():
        cells = _code_cells(read_nb(NBS/nb))
        if not any({'export', 'exports', 'exec_doc'} & set(c.directives) or 'show_doc(' in c.source for c in cells): continue
        mixed += [f'{nb}: {c.source[:70]!r}' for c in cells
                  if not {'export', 'exports', 'exporti', 'hide'} & set(c.directives) and _imports_and_code(c.source)]
    assert not mixed, ('cells the docs build would re-run (and fail on, or train in) because they mix imports with code; '
                       'move their imports to a cell of their own:\n' + '\n'.join(mixed))

# ---------------------------------------------------------------------------- documentation coverage
def _public_names():
    "{module: names in its `__all__`} for every exported module"
    res = {}
    for f in sorted(LIB.glob('*.py')):
        for node in ast.parse(f.read_text()).body:
            if isinstance(node, ast.Assign) and any(getattr(t, 'id', '') == '__all__' for t in node.targets):
                try: res.setdefault(f.stem, []).extend(ast.literal_eval(node.value))
                except ValueError: pass  # `all.py` gathers the other modules' names
    return {k: v for k, v in res.items() if v}

def _show_docs(cells):
    "{name: has markdown output} for every `show_doc(name...)` call"
    res = {}
    for c in cells:
        has_md = any('text/markdown' in o.get('data', {}) for o in c.get('outputs', []))
        for m in re.finditer(r'^show_doc\(\s*([\w.]+)', c.source, re.MULTILINE): res[m.group(1)] = res.get(m.group(1)) or has_md
    return res

def _used_names(src):
    "Identifiers a cell uses (names and attributes), not counting its `show_doc` calls"
    src = '\n'.join(l for l in src.splitlines() if not re.match(r'\s*(show_doc\(|[%!])', l))
    try: return {n.id if isinstance(n, ast.Name) else n.attr for n in ast.walk(ast.parse(src)) if isinstance(n, (ast.Name, ast.Attribute))}
    except SyntaxError: return set(re.findall(r'\w+', src))

def _module_notebook(module):
    "The notebook a module is exported from, relative to nbs/"
    m = re.search(r'File to edit: \.\./nbs/(\S+\.ipynb)', (LIB/f'{module}.py').read_text())
    return m.group(1) if m else None

def test_every_public_name_has_a_show_doc(processed):
    "Each name in a module's `__all__` is documented by an executed `show_doc` somewhere in the processed docs"
    proc, errors = processed
    docs = {}
    for nb in _notebooks():
        if (proc/nb).exists():
            for k, v in _show_docs(_code_cells(read_nb(proc/nb))).items(): docs[k] = docs.get(k) or v
    names = _public_names()
    unprocessed = {m: _module_notebook(m) for m in names if _module_notebook(m) in errors}
    gaps = {m: [n for n in ns if not docs.get(n)] for m, ns in names.items() if m not in unprocessed}
    gaps = {m: ns for m, ns in gaps.items() if ns}
    assert not gaps and not unprocessed, (f'public names without a rendered show_doc (module: names): {gaps}; '
                                          f'not checked, their notebooks failed processing: {unprocessed}')

def test_every_public_name_has_an_example():
    "Each name in a module's `__all__` is used in a visible, non-exported code cell of some notebook"
    used = set()
    for nb in _notebooks():
        for c in _code_cells(read_nb(NBS/nb)):
            if not NOT_EXAMPLES & set(c.directives): used |= _used_names(c.source)
    gaps = {m: [n for n in ns if n not in used] for m, ns in _public_names().items()}
    gaps = {m: ns for m, ns in gaps.items() if ns}
    assert not gaps, f'public names no visible example cell uses (module: names): {gaps}'

# ---------------------------------------------------------------------------- Quarto config and sidebar
def _sidebar_entries(contents):
    for o in contents:
        if isinstance(o, str): yield o
        elif isinstance(o, dict):
            if 'href' in o: yield o['href']
            yield from _sidebar_entries(o.get('contents', []))

def test_quarto_config_is_what_nbdev_docs_expects():
    "`nbdev-docs` would leave nbdev.yml unchanged, keep our sidebar.yml, and read both from _quarto.yml"
    cfg = get_config(ROOT)
    vals = {k: cfg[k] for k in ['title', 'description', 'branch', 'git_url', 'doc_host', 'doc_baseurl']}
    assert (NBS/'nbdev.yml').read_text() == _nbdev_yml.format(doc_path=cfg.doc_path.name, **vals), \
        'nbs/nbdev.yml differs from what nbdev-docs writes: run `python -c "from nbdev.quarto import refresh_quarto_yml; refresh_quarto_yml()"`'
    assert cfg.custom_sidebar, 'set custom_sidebar = true in [tool.nbdev], or nbdev-docs overwrites nbs/sidebar.yml'
    q = yaml.safe_load((NBS/'_quarto.yml').read_text())
    assert q['project']['type'] == 'website' and {'nbdev.yml', 'sidebar.yml'} <= set(q['metadata-files'])
    assert 'styles.css' == q['format']['html']['css'] and (NBS/'styles.css').exists()

def test_sidebar_lists_every_notebook_in_reading_order():
    "sidebar.yml names each notebook once, home page first, numbered chapters in order, and nothing that is missing"
    entries = list(_sidebar_entries(yaml.safe_load((NBS/'sidebar.yml').read_text())['website']['sidebar']['contents']))
    assert entries[0] == 'index.ipynb'
    assert len(entries) == len(set(entries)), 'a notebook is listed twice'
    assert TUTORIAL in entries
    missing, unlisted = [e for e in entries if not (NBS/e).exists()], set(_notebooks()) - set(entries)
    assert not missing, f'sidebar.yml lists notebooks that do not exist: {missing}'
    assert not unlisted, f'notebooks missing from sidebar.yml: {sorted(unlisted)}'
    numbered = [int(m.group(1)) for e in entries if (m := re.match(r'(\d+)_', e))]
    assert numbered == sorted(numbered), f'numbered chapters out of order in the sidebar: {numbered}'

def _page(target, folder):
    "Does a relative link from a page in `folder` reach a page or file of the site?"
    path = (folder/target.split('#')[0].split('?')[0]).resolve()
    if path.exists(): return True
    if path.suffix == '.html':  # Quarto renders `00_data.ipynb` as `data.html`, `09a_critic_ntk.ipynb` as `critic_ntk.html` (nbdev's rule)
        return any(re.sub(r'^\d+[a-zA-Z0-9]*_', '', p.stem.lower()) == path.stem for p in path.parent.glob('*.ipynb'))
    return False

def test_relative_links_resolve():
    "Links between pages are relative to the page's own folder (a tutorial links `../data.html`, not `data.html`)"
    broken = []
    for nb in _notebooks():
        for c in read_nb(NBS/nb).cells:
            if c.cell_type != 'markdown': continue
            for t in re.findall(r'\]\(([^)\s]+)\)', c.source) + re.findall(r'href="([^"]+)"', c.source):
                if not re.match(r'[a-z]+:|#', t) and not _page(t, (NBS/nb).parent): broken.append(f'{nb}: {t}')
    assert not broken, 'broken relative links:\n' + '\n'.join(broken)

# ---------------------------------------------------------------------------- HTML
_QUARTO_TAGS = {('echo', 'false'): 'remove_input', ('include', 'false'): 'remove_cell', ('output', 'false'): 'remove_output'}

def _for_nbconvert(nb):
    "A processed notebook as nbconvert can render it: Quarto cell options become nbconvert tags, the title a heading"
    for c in nb['cells']:
        for k in [k for k in c if k not in ('id', 'cell_type', 'metadata', 'source', 'outputs', 'execution_count', 'attachments')]:
            del c[k]  # nbdev's `has_sd` marker is not in the nbformat schema
        c['metadata'].pop('execution', None)  # timings nbdev's executor adds, not all valid nbformat
        if c['cell_type'] != 'code': continue
        src = ''.join(c['source'])
        opts = dict(re.findall(r'^#\|\s*([\w-]+):\s*(\S+)\s*$', src, re.MULTILINE))
        c['metadata'].setdefault('tags', []).extend(t for o, t in _QUARTO_TAGS.items() if opts.get(o[0]) == o[1])
        c['source'] = _body(src)
    fm = nb['cells'][0] if nb['cells'] and nb['cells'][0]['cell_type'] == 'raw' else None
    if fm and (meta := yaml.safe_load(''.join(fm['source']).strip().strip('-'))):
        head = f"# {meta.get('title', '')}\n\n> {meta.get('description', '')}"
        nb['cells'][0] = dict(cell_type='markdown', metadata={}, source=head, id=fm.get('id', 'frontmatter'))
    return nb

@pytest.fixture(scope='module')
def rendered(processed, tmp_path_factory):
    "Every processed notebook rendered to HTML by one `jupyter nbconvert --to html` call; returns the output folder"
    proc, out = processed[0], tmp_path_factory.mktemp('html')
    nbs = [nb for nb in _notebooks() if (proc/nb).exists()]
    for nb in nbs:
        (out/nb).parent.mkdir(parents=True, exist_ok=True)
        (out/nb).write_text(json.dumps(_for_nbconvert(json.loads((proc/nb).read_text()))))
    res = subprocess.run(['jupyter', 'nbconvert', '--to', 'html', '--log-level=ERROR', '--TagRemovePreprocessor.enabled=True',
                          *[f'--TagRemovePreprocessor.{k}_tags={v}' for k, v in (('remove_input', 'remove_input'),
                            ('remove_cell', 'remove_cell'), ('remove_all_outputs', 'remove_output'))], *nbs],
                         cwd=out, env=ENV, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, f'jupyter nbconvert failed:\n{res.stderr[-3000:]}'
    return out

def test_processed_notebooks_render_to_html(processed, rendered):
    "Each processed notebook renders, with its figures embedded and its show_doc entries as headings"
    proc, _ = processed
    for nb in _notebooks():
        if not (proc/nb).exists(): continue
        page = (rendered/nb).with_suffix('.html')
        assert page.exists(), f'{nb} did not render'
        text = page.read_text()
        pngs = sum('image/png' in o.get('data', {}) for c in _code_cells(read_nb(proc/nb)) for o in c.get('outputs', []))
        assert text.count('src="data:image/png;base64,') >= pngs, f'{page.name}: fewer figures than the notebook has'
        for name in _show_docs(_code_cells(read_nb(proc/nb))):
            assert re.search(fr'<h[2-4][^>]*>\s*{re.escape(name)}\b', text), f'{page.name}: no heading for show_doc({name})'

# ---------------------------------------------------------------------------- browser
_PROBE = """<script>
window.addEventListener('load', () => {
  const imgs = [...document.images].map(i => ({src: i.src.slice(0, 22), complete: i.complete, w: i.naturalWidth, h: i.naturalHeight}));
  const text = document.body.innerText;
  const out = document.createElement('pre'); out.id = 'docs-probe';
  out.textContent = JSON.stringify({imgs, text}); document.body.appendChild(out);
});
</script>"""

def _open_in_chromium(page, tmp_path):
    "Load `page` in headless Chromium; returns what the page shows: its images (natural sizes) and its text"
    if not CHROMIUM.exists():
        pytest.fail(f'{CHROMIUM} not found: the browser check needs Debian chromium (as root: `apt-get install -y chromium`)')
    probed = page.with_name(page.stem + '.probe.html')
    probed.write_text(page.read_text().replace('</body>', _PROBE + '</body>'))
    cmd = [str(CHROMIUM), '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage',
           '--host-resolver-rules=MAP * ~NOTFOUND', # offline: CDN scripts (MathJax, require.js) fail at once
           f'--user-data-dir={tmp_path/"chromium-profile"}', '--virtual-time-budget=10000', '--dump-dom', probed.as_uri()]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    m = re.search(r'<pre id="docs-probe">(.*?)</pre>', res.stdout, re.DOTALL)
    assert m, f'chromium did not load {page.name} (exit {res.returncode}):\n{res.stderr[-2000:]}'
    return json.loads(html.unescape(m.group(1)))

def _assert_figures_drawn(shown, name):
    figs = [i for i in shown['imgs'] if i['src'].startswith('data:image/png')]
    assert figs, f'{name}: no figures on the page'
    blank = [i for i in figs if not (i['complete'] and i['w'] > 0 and i['h'] > 0)]
    assert not blank, f'{name}: {len(blank)} of {len(figs)} figures did not draw: {blank}'

def _quick_start():
    "Source lines of the code cells under the home page's 'Quick start' heading"
    lines, level = [], None
    for c in read_nb(NBS/'index.ipynb').cells:
        h = re.match(r'(#+)\s+(.*)', c.source.strip()) if c.cell_type == 'markdown' else None
        if h and level and len(h.group(1)) <= level: break
        if h and h.group(2).strip().lower() == 'quick start': level = len(h.group(1))
        elif level and c.cell_type == 'code' and not HIDDEN & set(c.directives): lines += _body(c.source).splitlines()
    return [l for l in lines if l.strip()]

def test_home_page_in_browser(rendered, tmp_path):
    "The rendered home page draws its figure and shows the whole quick start (at most 20 lines)"
    code = _quick_start()
    assert 0 < len(code) <= 20, f"nbs/index.ipynb needs a 'Quick start' heading with up to 20 lines of code under it, found {len(code)}"
    shown = _open_in_chromium(rendered/'index.html', tmp_path)
    _assert_figures_drawn(shown, 'index.html')
    absent = [l for l in code if l.strip() not in shown['text']]
    assert not absent, f'quick-start lines not on the rendered home page: {absent}'

def test_tutorial_in_browser(rendered, tmp_path):
    "The rendered tutorial draws every figure"
    assert (NBS/TUTORIAL).exists(), f'the tutorial nbs/{TUTORIAL} does not exist'
    page = (rendered/TUTORIAL).with_suffix('.html')
    assert page.exists(), f'{TUTORIAL} was not processed or rendered (see test_proc_nbs_processes_every_notebook)'
    shown = _open_in_chromium(page, tmp_path)
    _assert_figures_drawn(shown, TUTORIAL)
    assert 'Traceback' not in shown['text']
