"""Distributed training on two CPU processes (gloo): `torchrun` runs this file as a script in each process
(`_worker`), and the tests compare what the processes saved. See nbs/11_distributed.ipynb."""
import os, socket, subprocess, sys, warnings
from pathlib import Path
import pytest, torch, torch.nn as nn
from fastai.callback.core import Callback
from fastai.torch_core import set_seed
from fastai.vision.gan import GANModule
from gan_conditioning.all import *

WORLD, EPOCHS, BS, N_REAL = 2, 2, 32, 1_200
SR_EVERY, JC_MIN, RING_STD = 2, 2., 0.1


def _sn_conv_critic():
    "A small ring critic of 1×1 spectrally normalised convolutions, so that SR has layers to act on."
    return sn_point_critic(width=32, depth=2)

def _models(): return mlp_generator(nz=2, width=32), _sn_conv_critic()

def _state(model): return {k: v.detach().clone() for k, v in model.state_dict().items()}


class _Probe(Callback):
    "Keep the first generator and critic steps' batches, weights and (averaged) gradients, and the critic after each SR edit."
    order = 95  # after JC's `before_batch` (the batch with the perturbed latents) and FrozenGradsCallback's `before_step`
    def before_fit(self): self.steps, self.after_sr, self.crit_steps, self._cur = {}, [], 0, None
    def before_batch(self):
        mode = 'gen' if self.learn.gan_trainer.gen_mode else 'crit'
        self._cur = mode if self.training and mode not in self.steps else None
        if self._cur: self.steps[mode] = dict(xb=self.learn.xb[0].clone(), yb=self.learn.yb[0].clone(), state=_state(self.learn.model))
    def before_step(self):
        if self._cur is None: return
        net = self.learn.model.generator if self._cur == 'gen' else self.learn.model.critic
        self.steps[self._cur]['grads'] = [p.grad.clone() for p in net.parameters()]
    def after_step(self):  # SpectralRegularizationCallback (order -5) has edited the weights by now
        if self.learn.gan_trainer.gen_mode: return
        self.crit_steps += 1
        if self.crit_steps % SR_EVERY == 0: self.after_sr.append(_state(self.learn.model.critic))


def _worker(out:Path):
    "One process of the distributed run: train the ring, save what the tests check."
    warnings.filterwarnings('ignore')
    set_seed(0)  # every process alike, as training scripts do
    learn = gan_learner(gan_dls(ring_data(N_REAL, seed=0), nz=2, bs=BS, device='cpu'), *_models(), cbs=[FrozenSteps()])
    init = _state(learn.model)
    cbs = dict(jc=JacobianClampCallback(lambda_min=JC_MIN), cn=ConditionNumberCallback(n_z=16),
               mon=SpectralMonitorCallback(every=1, warn_drop=None), sm=ring_metrics(std=RING_STD, n_samples=400),
               sr=SpectralRegularizationCallback(every=SR_EVERY), probe=_Probe())
    with gan_distrib_ctx(learn): fit_gan(learn, EPOCHS, 2e-3, cbs=list(cbs.values()))
    measures = {k: cb for k, cb in cbs.items() if isinstance(cb, MeasureCallback)}
    torch.save(dict(init=init, final=_state(learn.model), model=type(learn.model).__name__, frozen=learn.frozen_steps.changed,
                    steps=cbs['probe'].steps, after_sr=cbs['probe'].after_sr,
                    states={k: cb.state_dict() for k, cb in measures.items()},
                    on_learner={k: hasattr(learn, cb.handle) for k, cb in measures.items()}),
               out / f"rank{os.environ['RANK']}.pt")


@pytest.fixture(scope='module')
def ranks(tmp_path_factory):
    "Run the two processes once; the saved results of rank 0 and rank 1."
    out = tmp_path_factory.mktemp('ddp')
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); port = s.getsockname()[1]
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', str(WORLD), '--master_addr', '127.0.0.1',
           '--master_port', str(port), __file__, str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env={**os.environ, 'OMP_NUM_THREADS': '1'})
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-5000:]
    return [torch.load(out / f'rank{r}.pt', weights_only=True) for r in range(WORLD)]


def _gan(state):
    "A fresh `GANModule` with `state` (SR's buffers aside, which the forward does not read)."
    gan = GANModule(*_models())
    res = gan.load_state_dict(state, strict=False)
    assert not res.missing_keys and all(k.endswith('sr_ratio_max') for k in res.unexpected_keys), res
    return gan

def _max_diff(xs, ys): return max((x - y).abs().max().item() for x, y in zip(xs, ys))


def test_replicas_stay_identical(ranks):
    r0, r1 = ranks
    assert r0['model'] == r1['model'] == 'GANModule'  # the wrapper is gone after the fit
    assert set(r0['final']) == set(r1['final']) and any(k.endswith('sr_ratio_max') for k in r0['final'])
    for k in r0['final']: assert torch.equal(r0['final'][k], r1['final'][k]), k  # weights and buffers (SN's u, v; SR's ratios)
    params = [k for k in r0['init'] if not k.endswith(('_u', '_v'))]
    assert all(not torch.equal(r0['init'][k], r0['final'][k]) for k in params)  # both networks trained
    assert len(r0['after_sr']) == len(r1['after_sr']) == EPOCHS * (N_REAL - BS) // WORLD // BS // 2 // SR_EVERY
    for a, b in zip(r0['after_sr'], r1['after_sr']):
        for k in a: assert torch.equal(a[k], b[k]), k


def test_sr_edits_every_process(ranks):
    "Dynamic SR leaves each SN layer's normalised spectrum at its running maxima, `sr_ratio_max`, in both processes."
    for r in ranks:
        crit = r['after_sr'][-1]
        for layer in ('1', '3'):
            s = torch.linalg.svdvals(crit[f'{layer}.parametrizations.weight.original'].flatten(1).double())
            torch.testing.assert_close((s / s[0]).float(), crit[f'{layer}.sr_ratio_max'], atol=1e-5, rtol=1e-5)


def _local_grads(step, mode, jc_weight=1.):
    "The gradient one process computes alone on its saved batch: GAN loss (+ JC penalty in generator steps)."
    gan = _gan(step['state']); gan.train()
    G, C = gan.generator, gan.critic
    gen_loss, crit_loss = ns_loss()[:2]
    if mode == 'gen':  # xb is cat(z, z') after JC's before_batch
        x = G(step['xb']); n = len(x) // 2
        Q = clamp_quotient(x[:n], x[n:], 1.)
        penalty = clamp_penalty(Q, JC_MIN, 20.)
        assert penalty > 0  # JC is active, so the check below covers it
        loss, params = gen_loss(C(x[:n]), x[:n], None) + jc_weight * penalty, G.parameters()
    else:  # xb is the real batch, yb the latents, after GANTrainer's swap
        real_pred = C(step['xb'])
        with torch.no_grad(): fake = G(step['yb'])
        loss, params = crit_loss(real_pred, C(fake)), C.parameters()
    return torch.autograd.grad(loss, list(params))

@pytest.mark.parametrize('mode', ['gen', 'crit'])
def test_step_gradient_is_mean_of_local_gradients(ranks, mode):
    local = [_local_grads(r['steps'][mode], mode) for r in ranks]
    mean = [sum(gs) / WORLD for gs in zip(*local)]
    assert _max_diff(*local) > 1e-3  # the processes' batches (real samples, latents, JC's perturbations) differ
    for r in ranks: assert _max_diff(r['steps'][mode]['grads'], mean) < 1e-5
    if mode == 'gen':  # without the per-process JC penalty, the averaged gradient would not match
        mean_no_jc = [sum(gs) / WORLD for gs in zip(*[_local_grads(r['steps'][mode], mode, jc_weight=0.) for r in ranks])]
        assert _max_diff(ranks[0]['steps'][mode]['grads'], mean_no_jc) > 1e-3


def test_frozen_network_never_moves(ranks):
    for r in ranks:
        assert all(len(v) > 0 for v in r['frozen'].values())
        assert not any(any(v) for v in r['frozen'].values()), r['frozen']


def test_measured_once_on_rank_zero(ranks):
    r0, r1 = ranks
    assert r0['on_learner'] == dict(jc=True, cn=True, mon=True, sm=True)
    assert r1['on_learner'] == dict(jc=True, cn=False, mon=False, sm=False)
    assert all(len(r1['states'][k]['history']) == 0 for k in ('cn', 'mon', 'sm'))
    steps = EPOCHS * ((N_REAL - BS) // WORLD // BS)  # each process ran its half of every epoch
    st = r0['states']
    assert st['cn']['iters_before'] == steps and len(st['cn']['history']) == len(st['sm']['history']) == 1 + EPOCHS
    assert len(st['mon']['history']) == 1 + steps // 2
    assert len(st['jc']['history']) == len(r1['states']['jc']['history']) == steps // 2  # JC: every process, every generator step
    assert not torch.equal(st['jc']['q_values'][0], r1['states']['jc']['q_values'][0])


def test_measurements_equal_single_process_ones(ranks):
    "Rank 0's last measurements are those of one process on the final weights."
    st, gan = ranks[0]['states'], _gan(ranks[0]['final'])
    lc = log_condition_number(gan.generator, st['cn']['z'])
    assert abs(st['cn']['history'][-1]['log_cond'] - lc.mean().item()) < 1e-5
    spectra = weight_spectra(gan.critic)
    assert spectra.keys() == st['mon']['spectra'][-1].keys()
    for k, s in spectra.items(): torch.testing.assert_close(s, st['mon']['spectra'][-1][k])
    ms = mode_stats(generate(gan.generator, st['sm']['z']), ring_centers(), RING_STD)
    last = st['sm']['history'][-1]
    assert (last['modes'], last['hq']) == (ms.modes, ms.hq)   # equal, whatever the run reached (0 modes included)


if __name__ == '__main__': _worker(Path(sys.argv[1]))
