"`gc-study` as a user meets it: interrupted and rerun, it keeps every finished run and leaves no worker behind; bad arguments fail in one line; a diverging run does not stop the study."
import os, signal, subprocess, sys, time, shutil
from pathlib import Path
import pytest, torch, torch.nn as nn

GC_STUDY = shutil.which('gc-study') or str(Path(sys.executable).with_name('gc-study'))
ARGS = ['--variants', 'baseline,jc', '--seeds', '2', '--epochs', '3', '--no-checkpoints']  # 4 short runs

def _env(): return {**os.environ, 'MPLBACKEND': 'Agg', 'OMP_NUM_THREADS': '1'}

def _children(pid):
    "The process ids of `pid`'s children (Linux)."
    try: return {int(c) for t in Path(f'/proc/{pid}/task').iterdir() for c in (t / 'children').read_text().split()}
    except FileNotFoundError: return set()

def _alive(pid):
    try: return Path(f'/proc/{pid}/stat').read_text().split(') ')[1][0] not in 'ZX'
    except FileNotFoundError: return False

def _runs(folder): return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted((folder / 'ring/runs').glob('*.json'))}

def test_interrupted_study_keeps_finished_runs(tmp_path):
    out = tmp_path / 'study'
    # a shell's background job starts with SIGINT ignored, and Python keeps it so: restore it, as in a terminal
    p = subprocess.Popen([GC_STUDY, *ARGS, '--out', str(out)], env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 300
    while time.time() < deadline and len(list((out / 'ring/runs').glob('*.json'))) < 2 and p.poll() is None: time.sleep(0.05)
    assert p.poll() is None, f"gc-study ended before it could be interrupted:\n{p.stdout.read()}"
    workers = _children(p.pid)
    assert len(workers) >= 2, f"expected gc-study's default to train in worker processes, found children {workers}"
    p.send_signal(signal.SIGINT)                      # Ctrl-C, while the third and fourth runs train
    log = p.communicate(timeout=120)[0]
    assert p.returncode != 0 and 'interrupted; the finished runs are saved' in log and 'Traceback' not in log, log
    deadline = time.time() + 30
    while time.time() < deadline and any(map(_alive, workers)): time.sleep(0.1)
    assert not any(map(_alive, workers)), f"worker processes outlived the interrupted study: {[w for w in workers if _alive(w)]}"
    before = _runs(out)
    assert 2 <= len(before) < 4, f"expected an interrupted study, found {sorted(before)}"
    time.sleep(0.05)
    r = subprocess.run([GC_STUDY, *ARGS, '--out', str(out)], env=_env(), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"{len(before)} finished runs read back" in r.stdout and f"{4 - len(before)} to train" in r.stdout, r.stdout
    after = _runs(out)
    assert sorted(after) == ['baseline-seed0.json', 'baseline-seed1.json', 'jc-seed0.json', 'jc-seed1.json']
    for name, (data, mtime) in before.items():            # finished runs were read, not retrained or rewritten
        assert after[name] == (data, mtime), f"{name} was written again"
    assert 'var(hq %)' in r.stdout and 'log_kappa' in r.stdout and 'modes' in r.stdout
    assert (out / 'ring/study.png').stat().st_size > 10_000 and (out / 'ring/results.csv').exists()

@pytest.mark.parametrize('args, message', [
    (['--dataset', 'cifar'], "unknown dataset 'cifar'; choose from: ring, grid, mnist, stacked_mnist, ring-cond, grid-cond, mnist-cond, pacgan-ring, pacgan-grid, stacked-mnist-d4, stacked-mnist-d2, odena-mnist"),
    (['--variants', 'baseline,pack2'], "unknown variant part 'pack2'"),
    (['--dataset', 'pacgan-grid', '--variants', 'baseline,sr-static'], "pacgan-grid: the authors' critic has no spectrally normalised form"),
    (['--variants', ','], "--variants names no variant"),
    (['--dataset', 'mnist', '--variants', 'pac3'], "batch size 64 is not a multiple of m=3"),
    (['--seeds', '0'], "seeds (a number of seeds) must be a positive integer, got 0"),
    (['--epochs', '-2'], "epochs must be a positive integer, got -2"),
    (['--steps', '0'], "steps must be a positive integer, got 0"),
    (['--epochs', '2', '--steps', '100'], "as epochs or as steps, not both"),
    (['--every', '0'], "every must be a positive integer"),
    (['--lr', '0'], "lr must be a positive number, got 0"),
    (['--jobs', '-1'], "--jobs must be 0 (one per core) or a positive number"),
    (['--device', 'gpu7'], "device 'gpu7' is not a torch device"),
    pytest.param(['--device', 'cuda'], "this machine has no CUDA device",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason='this machine has CUDA')),
])
def test_bad_arguments_fail_in_one_line(tmp_path, args, message):
    r = subprocess.run([GC_STUDY, *args, '--out', str(tmp_path)], env=_env(), capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and message in r.stderr, r.stderr
    assert 'Traceback' not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not any(tmp_path.iterdir()), "nothing may be written for a bad command"

def test_diverging_run_is_recorded_and_the_study_goes_on(tmp_path):
    from gan_conditioning.studies import study_data, run_study
    from gan_conditioning.models import mlp_critic
    class Exploding(nn.Module):
        "A critic whose output turns infinite in about one step in a hundred."
        def __init__(self): super().__init__(); self.critic = mlp_critic()
        def forward(self, x): return self.critic(x) * torch.where(torch.rand(()) < 0.01, float('inf'), 1.)
    data = study_data('ring').replace(epochs=1, n_eval=500, n_curve=500, critic=lambda sn: Exploding() if sn else mlp_critic())
    with pytest.warns(UserWarning, match='the run diverged.*The study goes on'):
        study = run_study(data, ['sn', 'baseline'], seeds=1, out=tmp_path, checkpoints=False, progress=False, jobs=1)
    res = study.runs.set_index('variant')
    assert res.loc['sn', 'status'] == 'diverged' and 'loss is' in res.loc['sn', 'message']
    assert res.loc['baseline', 'status'] == 'ok' and res.loc['baseline', 'modes'] >= 0
    summary = study.summary()
    assert summary.loc['sn', 'runs ok'] == '0/1' and summary.loc['baseline', 'runs ok'] == '1/1'

def _dying_worker_cbs():
    "Callbacks for a study's worker that end its process at the first batch, as the OOM killer would."
    from fastai.callback.core import Callback
    class Die(Callback):
        def before_batch(self): os._exit(3)
    return [Die()]

def test_dead_worker_is_a_clear_error(tmp_path):
    "A worker that dies takes no traceback of the pool's to the user: one StudyError that says what to do."
    from gan_conditioning.studies import run_study, StudyError
    with pytest.raises(StudyError, match='a worker process stopped abruptly.*run the same study again'):
        run_study('ring', ['baseline'], seeds=2, epochs=1, jobs=2, out=tmp_path, cbs=_dying_worker_cbs, progress=False)

_UNGUARDED = """
from gan_conditioning.studies import run_study
print('the script ran')
run_study('ring', ['baseline'], seeds=2, steps=10, jobs=2, out={out!r}, progress=False, checkpoints=False)
"""

@pytest.mark.parametrize('how', ['script', 'stdin'])
def test_parallel_study_without_main_guard_says_what_to_do(tmp_path, how):
    "jobs=2 from a script without the main guard, or from `python -`: one StudyError naming the guard and jobs=1, no worker tracebacks, nothing trained."
    code = _UNGUARDED.format(out=str(tmp_path / 'out'))
    if how == 'script':
        (tmp_path / 'study.py').write_text(code)
        r = subprocess.run([sys.executable, str(tmp_path / 'study.py')], env=_env(), capture_output=True, text=True, timeout=300)
    else: r = subprocess.run([sys.executable, '-'], input=code, env=_env(), capture_output=True, text=True, timeout=300)
    err = r.stderr
    assert r.returncode != 0 and "StudyError" in err and "if __name__ == '__main__':" in err and 'jobs=1' in err, err
    assert err.count('Traceback') == 1 and 'BrokenProcessPool' not in err and 'run the same study again' not in err, err
    if how == 'script': assert 'called at the top level of' in err and str(tmp_path / 'study.py') in err, err
    else: assert 'is not a file they can read' in err, err
    assert not list((tmp_path / 'out').rglob('*.json'))

def _free_port():
    import socket
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

def test_gc_study_under_torchrun(tmp_path):
    "A 2-process CPU (gloo) launch of a short study: both processes train each run with DDP; rank 0 alone measures, writes and prints."
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2', '--master_addr', '127.0.0.1',
           '--master_port', str(_free_port()), GC_STUDY, *ARGS, '--seeds', '1', '--out', str(tmp_path)]
    r = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert r.stdout.count('runs ok') == 1 and r.stdout.count('finished runs read back') == 1, r.stdout   # one table, one writer
    import json
    runs = sorted((tmp_path / 'ring/runs').glob('*.json'))
    assert [p.name for p in runs] == ['baseline-seed0.json', 'jc-seed0.json']
    for p in runs:
        run = json.loads(p.read_text())
        assert run['result']['status'] == 'ok' and 0 <= run['result']['hq'] <= 1
        assert len(run['curves']['iter']) == 4          # measured once per epoch (and at the start), not once per process

def test_missing_cifar_is_one_line(tmp_path):
    "A preset whose data are not on disk stops at once, naming the folder and how to fill it."
    env = {**_env(), 'GC_CIFAR10': str(tmp_path / 'no-cifar')}
    r = subprocess.run([GC_STUDY, '--dataset', 'srgan-cifar-c32-b8', '--variants', 'sn', '--seeds', '1', '--out', str(tmp_path / 'out')],
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and f"CIFAR-10 is not in {tmp_path / 'no-cifar'}/cifar-10-batches-py" in r.stderr, r.stderr
    assert 'Traceback' not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr

@pytest.mark.parametrize('cmd,switch,says', [('gc-study', '--no-checkpoints', 'save only the results and curves, no checkpoints'),
                                             ('gc-demo', '--no-jc', 'train without Jacobian Clamping (the baseline)')])
def test_switch_help_says_what_the_switch_does(cmd, switch, says):
    exe = shutil.which(cmd) or str(Path(sys.executable).with_name(cmd))
    out = subprocess.run([exe, '--help'], env={**_env(), 'COLUMNS': '200'}, capture_output=True, text=True, timeout=120).stdout
    line = next(l for l in out.splitlines() if l.strip().startswith(switch))
    assert line.split(switch, 1)[1].strip() == says, line
