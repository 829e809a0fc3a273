"Losses against direct formulas, V* by an ideal critic, the gap-aware scheduler, and every callback with every loss."
import math, warnings
import pytest, torch, torch.nn as nn
from fastai.callback.core import Callback
from fastai.torch_core import set_seed
from gan_conditioning.all import *

warnings.filterwarnings('ignore', message='You are shadowing an attribute')

LOSSES = {'ns': ns_loss, 'lsgan': lsgan_loss, 'lsgan_chi2': lambda: lsgan_loss(-1, 1, 0), 'hinge': hinge_loss,
          'alpha': lambda: alpha_loss(2., 1.5), 'wgan': wgan_loss, 'wgan_clip': wgan_loss, 'vral': vral_loss, 'pgan': pgan_loss}
LOSS_CBS = {'wgan_clip': lambda: [WeightClipCallback()]}   # the callbacks a loss trains with


def _close(a, b, tol=1e-6): assert abs(float(a) - float(b)) <= tol, (float(a), float(b))

def test_losses_match_direct_formulas():
    r, f, sig = torch.tensor([-2., 0.5, 3.]), torch.tensor([1., -1., 0.]), torch.sigmoid
    g, c = ns_loss()
    _close(c(r, f), (-torch.log(sig(r))).mean() + (-torch.log(1 - sig(f))).mean())
    _close(g(f, None, None), (-torch.log(sig(f))).mean())
    g, c = lsgan_loss(-1, 1, 0)
    _close(c(r, f), (0.5 * (r - 1) ** 2).mean() + (0.5 * (f + 1) ** 2).mean())
    _close(g(f, None, None), (0.5 * f ** 2).mean())
    g, c = hinge_loss()
    _close(c(r, f), torch.clamp(1 - r, min=0).mean() + torch.clamp(1 + f, min=0).mean())
    _close(g(f, None, None), -f.mean())
    g, c = wgan_loss()
    _close(c(r, f), f.mean() - r.mean())
    a_d, a_g = 3., 0.7
    g, c = alpha_loss(a_d, a_g)
    la = lambda y, p, a: a / (a - 1) * (1 - y * p ** ((a - 1) / a) - (1 - y) * (1 - p) ** ((a - 1) / a))
    _close(c(r, f), la(1, sig(r), a_d).mean() + la(0, sig(f), a_d).mean(), 1e-5)
    _close(g(f, None, None), la(1, sig(f), a_g).mean(), 1e-5)
    g, c = vral_loss(0.5, -2., 1.5)   # KL of N(m, s²) from N(μ, σ²), written out; s² the batch's population variance
    kl = lambda x, mu, sd: math.log(sd / x.var(unbiased=False).sqrt()) + (x.var(unbiased=False) + (x.mean() - mu) ** 2) / (2 * sd ** 2) - 0.5
    _close(c(r, f), kl(r, 0.5, 1.5) + kl(f, -2., 1.5), 1e-5)
    _close(g(f, None, None), (0.5 * (f - 0.5) ** 2).mean())
    for means, sd in (((1.,), 1.), ((0., 3.), 0.7)):   # u = L(y)/max L, the mixture's maximum at a mean (one, or two far apart)
        g, c = pgan_loss(means, sd)
        dens = lambda y: sum(torch.exp(-0.5 * ((y - m) / sd) ** 2) for m in means)
        u = lambda y: dens(y) / dens(torch.tensor(means[0]))
        r2, f2 = r + 0.3, f + 0.3   # off the means, where 1 - u = 0
        _close(c(r2, f2), -torch.log(u(r2)).mean() - torch.log(1 - u(f2)).mean(), 1e-5)
        _close(g(f2, None, None), -torch.log(u(f2)).mean(), 1e-5)


def test_alpha_loss_limits_and_extremes():
    x = torch.linspace(-6, 6, 13, dtype=torch.float64)
    ce = ns_loss()
    for eps in (1e-3, 1e-6):
        g, c = alpha_loss(1 + eps, 1 - eps)
        assert c(x, x.flip(0)).item() == pytest.approx(ce[1](x, x.flip(0)).item(), rel=1e-2 * eps / 1e-3 + 1e-9)
        assert g(x, None, None).item() == pytest.approx(ce[0](x, None, None).item(), rel=1e-2 * eps / 1e-3 + 1e-9)
    ext = torch.tensor([-1e4, -80., 80., 1e4])
    for a in (1., 1.01, 2., 10., float('inf')):
        g, c = alpha_loss(a, a)
        assert torch.isfinite(c(ext, ext)) and torch.isfinite(g(ext, None, None))
    with pytest.raises(ValueError, match='alpha_d'): alpha_loss(0.)


@pytest.mark.parametrize('name', ['ns', 'lsgan', 'lsgan_chi2', 'hinge', 'alpha', 'vral', 'pgan'])
def test_v_star_by_optimising_an_ideal_critic(name):
    "P = Q on a known 1-D space (integer weights): the best free critic's loss is V*."
    loss = LOSSES[name]()
    P = torch.tensor([3, 1, 4, 1, 5])
    assert ideal_critic_loss(loss, P, P) == pytest.approx(loss.v_star, abs=2e-3)
    # and a different Q can only lower the optimal critic loss
    assert ideal_critic_loss(loss, P, P.flip(0)) < loss.v_star - 1e-3


def test_known_v_star_values():
    assert ns_loss().v_star == pytest.approx(math.log(4))
    assert lsgan_loss().v_star == pytest.approx(0.25) and lsgan_loss(-1, 1, 0).v_star == pytest.approx(1.)
    assert hinge_loss().v_star == 2 and wgan_loss().v_star == 0
    assert alpha_loss(1.).v_star == pytest.approx(math.log(4))
    assert alpha_loss(float('inf')).v_star == pytest.approx(1.)
    assert vral_loss().v_star == 1 and vral_loss(2., 0., 2.).v_star == pytest.approx(0.25)
    assert pgan_loss().v_star == pytest.approx(math.log(4)) and pgan_loss((-1., 1.), 0.5).v_star == pytest.approx(math.log(4))


def test_vral_and_pgan_keep_the_generator_gradient_when_the_critic_wins():
    "Far on the generated side of a perfect critic, ∂L_G/∂D(G(z)) grows with the distance; the saturating loss's vanishes."
    for loss in (vral_loss(), pgan_loss()):
        grads = []
        for d in (-5., -20., -100.):
            y = torch.full((4,), d, requires_grad=True)
            loss[0](y, None, None).backward(); grads.append(y.grad.abs().sum().item())
        assert grads[0] > 1 and grads[0] < grads[1] < grads[2] and all(math.isfinite(g) for g in grads)
    y = torch.full((4,), -20., requires_grad=True)
    (-torch.nn.functional.softplus(y).mean()).backward()   # the saturating E log(1 - σ(D))
    assert y.grad.abs().sum() < 1e-8


def test_weight_clip_callback_clips_the_critic_only():
    set_seed(0)
    learn = gan_learner(gan_dls(ring_data(1_200), nz=2, bs=100), mlp_generator(width=32), mlp_critic(width=32), loss=wgan_loss(), n_crit=5)
    with learn.no_bar(), learn.no_logging(): learn.fit(1, 1e-3, cbs=WeightClipCallback(0.02))
    assert max(p.abs().max().item() for p in learn.model.critic.parameters()) <= 0.02
    assert max(p.abs().max().item() for p in learn.model.generator.parameters()) > 0.02
    with pytest.raises(ValueError, match='positive'): WeightClipCallback(0.)
    from fastai.learner import Learner
    plain = Learner(gan_dls(ring_data(1000), nz=2, bs=100), mlp_generator(), loss_func=torch.nn.MSELoss())
    with pytest.raises(ValueError, match='needs a fastai GANLearner'):
        with plain.no_bar(), plain.no_logging(): plain.fit(1, cbs=WeightClipCallback())


@pytest.mark.parametrize('ema,expected', [(0., 1.), (0.05, 2 ** 0.5), (0.1, 2.), (0.5, 2.), (-0.05, 0.1 ** 0.5), (-0.1, 0.1), (-1., 0.1)])
def test_gap_multiplier_formula(ema, expected):
    v = 1.
    assert gap_lr_multiplier(v + ema, v, 0.1, 0.1) == pytest.approx(expected)


def test_gap_callback_reads_v_star_and_only_scales_critic_lr():
    class StepLR(Callback):
        order = 95
        def before_fit(self): self.lrs = {True: [], False: []}; self.mults = []
        def before_step(self):
            self.lrs[self.learn.gan_trainer.gen_mode].append(self.learn.opt.hypers[0]['lr'])
            if not self.learn.gan_trainer.gen_mode: self.mults.append(self.learn.gap_aware_lr.mult)
    set_seed(0)
    learn = gan_learner(gan_dls(ring_data(3_000), nz=2, bs=100), mlp_generator(), mlp_critic(), loss=hinge_loss())
    rec = StepLR()
    with learn.no_bar(), learn.no_logging(): learn.fit_one_cycle(2, 1e-3, cbs=[GapAwareLRCallback(), rec])
    assert learn.gap_aware_lr.v == 2.
    # one-cycle changes the lr every batch; the generator gets exactly the schedule, the critic the schedule × multiplier
    sched = learn.recorder.lrs
    assert len(rec.lrs[True]) > 5 and len(set(rec.mults)) > 1
    gen_iters = [i for i, h in enumerate(learn.gap_aware_lr.history)]  # history is per critic step
    for lr, m in zip(rec.lrs[False], rec.mults): assert lr > 0
    assert all(any(abs(lr - s) < 1e-15 for s in sched) for lr in rec.lrs[True])
    # after the fit the optimizer's lr is the schedule's, not a scaled one
    assert learn.opt.hypers[0]['lr'] == pytest.approx(sched[-1])


def test_gap_callback_needs_v_star():
    learn = gan_learner(gan_dls(ring_data(1_000), nz=2, bs=100), mlp_generator(), mlp_critic(), loss=(ns_loss()[0], lambda r, f: r.mean()))
    with pytest.raises(ValueError, match='v_star'), learn.no_bar(), learn.no_logging(): learn.fit(1, 1e-3, cbs=GapAwareLRCallback())
    learn = gan_learner(gan_dls(ring_data(1_000), nz=2, bs=100), mlp_generator(), mlp_critic(), loss=wgan_loss())
    with pytest.raises(ValueError, match='x_min'), learn.no_bar(), learn.no_logging(): learn.fit(1, 1e-3, cbs=GapAwareLRCallback())


def test_gradient_penalty_callback_adds_the_penalty():
    "The critic's loss_grad in a critic step equals the critic loss + λ·GP of the step's real and generated batch."
    class Check(Callback):
        order = 60  # after GradientPenaltyCallback's after_loss
        def before_fit(self): self.diffs = []
        def after_loss(self):
            if self.learn.gan_trainer.gen_mode or not self.training: return
            gp = self.learn.gradient_penalty.penalties[-1]
            self.diffs.append(abs(self.learn.loss_grad.item() - (self.learn.loss_func.crit_loss.item() + 10 * gp)))
    set_seed(0)
    learn = gan_learner(gan_dls(ring_data(1_000), nz=2, bs=100), mlp_generator(), mlp_critic(), loss=wgan_loss(), n_crit=5)
    chk = Check()
    with learn.no_bar(), learn.no_logging(): learn.fit(1, 1e-4, cbs=[GradientPenaltyCallback(), chk])
    assert len(chk.diffs) > 3 and max(chk.diffs) < 1e-5


def _sn_conv_critic():
    "A small ring critic of 1×1 spectrally normalised convolutions, so that SR has layers to act on."
    return sn_point_critic(width=32, depth=2)

CALLBACKS = {
    'jacobian_clamp': lambda loss: JacobianClampCallback(),
    'condition_number': lambda loss: ConditionNumberCallback(n_z=8),
    'packing': lambda loss: PackingCallback(2),
    'ring_metrics': lambda loss: ring_metrics(n_samples=500),
    'gap_aware': lambda loss: GapAwareLRCallback(x_min=0.1, x_max=0.1) if loss.v_star == 0 else GapAwareLRCallback(),
    'gradient_penalty': lambda loss: GradientPenaltyCallback(),
    'weight_clip': lambda loss: WeightClipCallback(),
    'spectral_monitor': lambda loss: SpectralMonitorCallback(every=2),
    'spectral_regularization': lambda loss: SpectralRegularizationCallback('dynamic', every=2),
    'spectral_regularization_static': lambda loss: SpectralRegularizationCallback('static', every=2),
}

@pytest.mark.parametrize('cb', list(CALLBACKS))
@pytest.mark.parametrize('loss', list(LOSSES))
def test_every_callback_with_every_loss(cb, loss):
    set_seed(0)
    lp = LOSSES[loss]()
    learn = gan_learner(gan_dls(ring_data(1_200), nz=2, bs=100), mlp_generator(width=32), _sn_conv_critic(), loss=lp)
    with learn.no_bar(), learn.no_logging(): learn.fit(1, 1e-4, cbs=[CALLBACKS[cb](lp), *LOSS_CBS.get(loss, list)()])
    losses = [float(v) for v in learn.recorder.losses]
    assert len(losses) == 11 and all(math.isfinite(v) for v in losses)
