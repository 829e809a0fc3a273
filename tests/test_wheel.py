"The wheel that `python -m build` makes installs into a clean environment, ships the MNIST classifier's weights, and trains with a callback."
import os, subprocess, sys, sysconfig, textwrap, zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

def test_wheel_installs_and_runs(tmp_path):
    dist = tmp_path / 'dist'
    r = subprocess.run([sys.executable, '-m', 'build', '--wheel', '--outdir', str(dist), str(ROOT)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    wheel, = dist.glob('gan_conditioning-*.whl')
    names = zipfile.ZipFile(wheel).namelist()
    assert 'gan_conditioning/mnist_classifier.pt' in names and 'gan_conditioning/studies.py' in names, names
    # a clean venv: the wheel itself, installed without its dependencies, which it finds (torch alone is 5 GB)
    # through a path entry to this environment's site-packages; that adds the folder, not its .pth files,
    # so this checkout's editable install stays invisible
    venv = tmp_path / 'venv'
    subprocess.run([sys.executable, '-m', 'venv', str(venv)], check=True, timeout=120)
    py = venv / 'bin' / 'python'
    site = Path(subprocess.check_output([str(py), '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])'], text=True).strip())
    (site / 'deps.pth').write_text(sysconfig.get_paths()['purelib'] + '\n')
    r = subprocess.run([str(py), '-m', 'pip', 'install', '--no-deps', '--no-index', '-q', str(wheel)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    script = textwrap.dedent("""
        import warnings; warnings.filterwarnings('ignore')
        from pathlib import Path
        import gan_conditioning
        from gan_conditioning.all import *
        assert Path(gan_conditioning.__file__).parent.parent.name == 'site-packages', gan_conditioning.__file__
        clf = mnist_classifier()            # the weights shipped in the wheel
        learn = gan_learner(gan_dls(ring_data(600), nz=2, bs=100), mlp_generator(), mlp_critic())
        with learn.no_bar(), learn.no_logging(): learn.fit(1, 1e-3, cbs=JacobianClampCallback())
        print('ok', gan_conditioning.__file__)
        """)
    r = subprocess.run([str(py), '-c', script], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                       env={**os.environ, 'PYTHONNOUSERSITE': '1', 'PYTHONPATH': ''})
    assert r.returncode == 0 and r.stdout.startswith('ok'), r.stdout[-3000:] + r.stderr[-3000:]
    assert str(venv) in r.stdout
