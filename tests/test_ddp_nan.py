"""A NaN in one process of a two-process DDP run (gloo) stops both, at the same step, with a `FloatingPointError`.

`torchrun` runs this file as a script in each process (`_worker`). Like `train_run` under `gc-study`, each
process catches the error and goes on to a collective call (`dist.barrier`); had only one process raised, the
other would be left training, waiting in its next all-reduce, and the launch would hang until the timeout."""
import os, json, socket, subprocess, sys, warnings
from pathlib import Path
import pytest, torch, torch.distributed as dist
from fastai.callback.core import Callback
from fastai.torch_core import set_seed
from gan_conditioning.all import *

BAD_ITER, CHECK = 9, 4   # the training iteration poisoned on rank 1; NaN checks read every CHECK steps

class _Poison(Callback):
    "On rank 1 only, make one training step non-finite: its loss (`loss`) or its generator's latents (`latents`)."
    order = 55  # after JC's `after_loss`, before StopOnNaNCallback's
    def __init__(self, how): self.how = how
    def _now(self): return self.training and int(os.environ['RANK']) == 1 and self.learn.train_iter == BAD_ITER
    def before_batch(self):
        if self.how == 'latents' and self._now() and self.learn.gan_trainer.gen_mode: self.learn.xb = (self.learn.xb[0] * float('nan'),)
    def after_loss(self):
        if self.how == 'loss' and self._now(): self.learn.loss_grad = self.learn.loss_grad * float('nan')

# which callback must stop the run, and how the NaN gets in (BAD_ITER is a generator step: fastai alternates, critic first)
CASES = {'StopOnNaN': ('loss', lambda: [StopOnNaNCallback(check_every=CHECK)]),
         'JacobianClamp': ('latents', lambda: [JacobianClampCallback(check_every=CHECK)]),
         'SpectralRegularization': ('loss', lambda: [SpectralRegularizationCallback('static', every=1)])}

class _PoisonedCritic(torch.nn.Module):
    "A ring critic whose output is NaN in rank 1's BAD_ITER-th forward."
    def __init__(self, pack=1): super().__init__(); self.critic, self.n = mlp_critic(width=32, pack=pack), 0
    def forward(self, x):
        self.n += 1
        return self.critic(x) * (float('nan') if self.n == BAD_ITER and int(os.environ['RANK']) == 1 else 1.)

def _poisoned(sn, pack=1): return _PoisonedCritic(pack) if pack == 1 else mlp_critic(width=32, pack=pack)

def _study(out):
    "`run_study` under torchrun: the baseline diverges on rank 1 only; both processes record it and go on to `pac2`."
    from gan_conditioning.studies import study_data, run_study
    data = study_data('ring').replace(name='ring-poisoned', critic=_poisoned, epochs=1, n_eval=200, n_curve=200)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        run_study(data, ['baseline', 'pac2'], seeds=1, out=out, checkpoints=False, progress=False)

def _worker(case, out):
    if case == 'study': return _study(out)
    warnings.filterwarnings('ignore')
    set_seed(0)
    how, cbs = CASES[case]
    learn = gan_learner(gan_dls(ring_data(2_000, seed=0), nz=2, bs=50, device='cpu'), mlp_generator(width=32),
                        sn_point_critic(width=32, depth=2), cbs=[_Poison(how), *cbs()])
    res = dict(raised=None, iter=None)
    try:
        with gan_distrib_ctx(learn): fit_gan(learn, 2, 1e-3)
    except FloatingPointError as e: res.update(raised=str(e), iter=learn.train_iter)
    dist.barrier()   # both processes got here: neither is left waiting for the other
    (Path(out) / f"rank{os.environ['RANK']}.json").write_text(json.dumps(res))

@pytest.mark.parametrize('case', list(CASES))
def test_nan_on_one_rank_stops_both(tmp_path, case):
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); port = s.getsockname()[1]
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2', '--master_addr', '127.0.0.1',
           '--master_port', str(port), __file__, case, str(tmp_path)]
    try: r = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env={**os.environ, 'OMP_NUM_THREADS': '1'})
    except subprocess.TimeoutExpired: pytest.fail(f"{case}: the launch hung (a process was left waiting for the other)")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    r0, r1 = (json.loads((tmp_path / f'rank{i}.json').read_text()) for i in range(2))
    assert r0['raised'] and r1['raised'], (r0, r1)
    assert r0['iter'] == r1['iter'] and BAD_ITER <= r0['iter'] <= BAD_ITER + 2 * CHECK + 1, (r0, r1)   # the same step, soon after
    if case != 'SpectralRegularization':   # the guards name the step that went bad, in both processes
        assert f'training iteration {BAD_ITER}' in r1['raised'] and f'training iteration {BAD_ITER}' in r0['raised'], (r0, r1)
        assert 'another process' in r0['raised'] and 'another process' not in r1['raised'], (r0, r1)

def test_study_under_torchrun_records_a_one_rank_divergence_once(tmp_path):
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); port = s.getsockname()[1]
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2', '--master_addr', '127.0.0.1',
           '--master_port', str(port), __file__, 'study', str(tmp_path)]
    try: r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, 'OMP_NUM_THREADS': '1'})
    except subprocess.TimeoutExpired: pytest.fail("the study hung after a run diverged in one process")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    runs = {p.stem: json.loads(p.read_text())['result'] for p in (tmp_path / 'ring-poisoned/runs').glob('*.json')}
    assert sorted(runs) == ['baseline-seed0', 'pac2-seed0']   # one record of each run, written by rank 0
    assert runs['baseline-seed0']['status'] == 'diverged' and 'another process' in runs['baseline-seed0']['message'], runs
    assert runs['pac2-seed0']['status'] == 'ok'   # and the study went on, both processes together

if __name__ == '__main__': _worker(sys.argv[1], sys.argv[2])
