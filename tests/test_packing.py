"Packing checks the notebook cannot express compactly: gradients through a real fastai step, plain fastai learners, brute-force TV."
import itertools, math, warnings
import pytest, torch, torch.nn as nn
from fastai.callback.core import Callback
from fastai.torch_core import set_seed
from fastai.vision.gan import GANLearner, basic_generator, basic_critic
from gan_conditioning.data import gan_dls, ring_data
from gan_conditioning.models import mlp_generator, mlp_critic, dcgan_critic
from gan_conditioning.packing import *

warnings.filterwarnings('ignore', message='You are shadowing an attribute')


@pytest.mark.parametrize('shape', [(12, 2), (12, 3, 5, 5), (12, 1, 28, 28)])
@pytest.mark.parametrize('m', [1, 2, 3, 4])
def test_pack_roundtrip(shape, m):
    x = torch.randn(shape)
    p = pack(x, m)
    assert p.shape == (12 // m, m * shape[1], *shape[2:])
    assert torch.equal(unpack(p, m), x)
    for k in range(12 // m):  # pack k = samples km..km+m-1, joined along axis 1
        assert torch.equal(p[k], torch.cat(list(x[k * m:(k + 1) * m])))


def test_pack_rejects_bad_batches():
    with pytest.raises(ValueError, match='multiple of m=5'): pack(torch.randn(12, 2), 5)
    with pytest.raises(ValueError, match='positive integer'): pack(torch.randn(12, 2), 0)
    with pytest.raises(ValueError, match='multiple of m=3'): unpack(torch.randn(4, 4), 3)


@pytest.mark.parametrize('m', [1, 2, 4])
def test_packed_critic_output_count(m):
    assert PackedCritic(mlp_critic(pack=m), m)(torch.randn(16, 2)).shape == (16 // m,)
    assert PackedCritic(dcgan_critic(n_channels=3, width=4, pack=m), m)(torch.randn(16, 3, 28, 28)).shape == (16 // m,)


class CaptureGenGrad(Callback):
    "At the first generator step, compare the learner's generator gradient with one computed by hand."
    order = 95
    def __init__(self, m): self.m, self.err = m, None
    def before_step(self):
        if not self.learn.gan_trainer.gen_mode or self.err is not None: return
        G, D = self.learn.model.generator, self.learn.model.critic.critic
        z = self.learn.xb[0]
        x = G(z)
        packs = torch.stack([torch.cat(list(x[k * self.m:(k + 1) * self.m])) for k in range(len(x) // self.m)])
        loss = nn.functional.softplus(-D(packs)).mean()  # the non-saturating generator loss, written out
        manual = torch.autograd.grad(loss, list(G.parameters()))
        self.err = max(((a - p.grad).abs().max() / p.grad.abs().max()).item() for a, p in zip(manual, G.parameters()))
        self.per_sample = torch.autograd.grad(nn.functional.softplus(-D(packs)).mean(), x)[0].norm(dim=1)


@pytest.mark.parametrize('m', [2, 3])
def test_generator_gradient_uses_every_sample(m):
    from gan_conditioning.models import gan_learner
    set_seed(0)
    learn = gan_learner(gan_dls(ring_data(1_000), nz=2, bs=96), mlp_generator(), mlp_critic())
    cb = CaptureGenGrad(m)
    with learn.no_bar(), learn.no_logging(): learn.fit(1, 1e-3, cbs=[PackingCallback(m), cb])
    assert cb.err is not None and cb.err < 1e-5
    assert len(cb.per_sample) == 96 and (cb.per_sample > 0).all()


def test_packing_callback_on_plain_fastai_gan_learner():
    "fastai's own GANLearner.wgan with basic_generator/basic_critic: the first conv is widened and training runs."
    set_seed(0)
    real = torch.rand(320, 1, 16, 16) * 2 - 1
    dls = gan_dls(real, nz=32, bs=32)
    G, D = basic_generator(16, n_channels=1, in_sz=32, n_extra_layers=0), basic_critic(16, n_channels=1, n_extra_layers=0)
    learn = GANLearner.wgan(dls, G, D, show_img=False)
    before = [p.clone() for p in learn.model.critic.parameters()][1:]
    with learn.no_bar(), learn.no_logging(): learn.fit(1, 1e-4, cbs=PackingCallback(2))
    crit = learn.model.critic
    assert isinstance(crit, PackedCritic) and crit.m == 2
    first = next(m for m in crit.modules() if isinstance(m, nn.Conv2d))
    assert first.in_channels == 2
    assert crit(real[:8]).numel() == 4
    after = [p for p in crit.parameters()][1:]
    assert any(not torch.equal(a, b) for a, b in zip(before, after))  # the critic trained
    assert all(torch.isfinite(torch.as_tensor(v)).all() for v in learn.recorder.losses)


def test_packing_callback_errors():
    from gan_conditioning.models import gan_learner
    learn = gan_learner(gan_dls(ring_data(1_000), nz=2, bs=100), mlp_generator(), mlp_critic())
    with pytest.raises(ValueError, match='multiples of 3'), learn.no_bar(), learn.no_logging():
        learn.fit(1, 1e-3, cbs=PackingCallback(3))
    wn = gan_learner(gan_dls(ring_data(1_000), nz=2, bs=100), mlp_generator(), mlp_critic())
    wn.model.critic[0][0] = nn.utils.parametrizations.weight_norm(nn.Linear(2, 128))
    with pytest.raises(ValueError, match='pack=2'), wn.no_bar(), wn.no_logging(): wn.fit(1, 1e-3, cbs=PackingCallback(2))
    with pytest.raises(ValueError, match='positive integer'): PackingCallback(0)


def test_packing_callback_keeps_lr():
    "Widening the first layer rebuilds the optimizer; the fit's learning rate must survive."
    from gan_conditioning.models import gan_learner
    class LR(Callback):
        def before_step(self): self.lr = self.learn.opt.hypers[-1]['lr']
    learn = gan_learner(gan_dls(ring_data(1_000), nz=2, bs=100), mlp_generator(), mlp_critic())
    rec = LR()
    with learn.no_bar(), learn.no_logging(): learn.fit(1, 3.3e-4, cbs=[PackingCallback(2), rec])
    assert rec.lr == pytest.approx(3.3e-4)
    n_opt = sum(p.numel() for g in learn.opt.param_lists for p in g)
    assert n_opt == sum(p.numel() for p in learn.model.parameters())  # the widened layer is optimised


def _random_pair(k, seed, zeros=0):
    g = torch.Generator().manual_seed(seed)
    p, q = torch.rand(k, generator=g, dtype=torch.float64), torch.rand(k, generator=g, dtype=torch.float64)
    q[:zeros] = 0; p[k - zeros:] = 0  # atoms that only one of the two distributions reaches
    return p / p.sum(), q / q.sum()


@pytest.mark.parametrize('k,m,zeros', [(2, 6, 0), (3, 4, 0), (4, 3, 1), (5, 3, 1), (3, 5, 1)])
def test_product_tv_matches_enumeration(k, m, zeros):
    for seed in range(3):
        p, q = _random_pair(k, seed, zeros)
        assert product_tv(p, q, m) == pytest.approx(product_tv_enumerate(p, q, m), abs=1e-12)
        e, d = mode_collapse_region(p, q, m)
        assert (d - e).max().item() == pytest.approx(product_tv(p, q, m), abs=1e-12)


def test_product_tv_closed_forms():
    p, q = _random_pair(6, 0)
    assert product_tv(p, q, 1) == pytest.approx(0.5 * (p - q).abs().sum().item(), abs=1e-12)
    for tau in (0.05, 0.3):  # a dropped mode of mass tau: TV(P^m, Q^m) = 1 - (1 - tau)^m
        for m in (1, 7, 200):
            assert product_tv(*collapse_pair(0., tau), m) == pytest.approx(1 - (1 - tau) ** m, abs=1e-10)
    # TV(Bin(m, a), Bin(m, b)) by a direct sum over the binomial
    a, b, m = 0.3, 0.45, 40
    direct = 0.5 * sum(abs(math.comb(m, j) * (a ** j * (1 - a) ** (m - j) - b ** j * (1 - b) ** (m - j))) for j in range(m + 1))
    assert product_tv(*collapse_pair(b, a), m) == pytest.approx(direct, abs=1e-12)


def test_region_points_are_achievable_tests():
    "Each boundary point (Q^m(S), P^m(S)) is a real set S of sequences: check by enumeration."
    p, q = _random_pair(3, 1)
    m = 3
    seqs = list(itertools.product(range(3), repeat=m))
    P = torch.tensor([math.prod(p[i].item() for i in s) for s in seqs], dtype=torch.float64)
    Q = torch.tensor([math.prod(q[i].item() for i in s) for s in seqs], dtype=torch.float64)
    order = torch.argsort(Q / P)
    e, d = mode_collapse_region(p, q, m)
    brute = set((round(a, 9), round(b, 9)) for a, b in zip(Q[order].cumsum(0).tolist(), P[order].cumsum(0).tolist()))
    assert all((round(a, 9), round(b, 9)) in brute for a, b in zip(e.tolist()[1:], d.tolist()[1:]))


def test_bad_distributions():
    with pytest.raises(ValueError, match='probability vector'): product_tv([0.5, 0.6], [0.5, 0.5])
    with pytest.raises(ValueError, match='same atoms'): product_tv([0.5, 0.5], [1.])
    with pytest.raises(ValueError, match='max_types'): product_tv(*_random_pair(30, 0), 40, max_types=1000)


@pytest.mark.parametrize('api', ['parametrizations', 'hook'])
def test_packing_keeps_spectral_norm_of_the_widened_layer(api):
    from gan_conditioning.models import gan_learner
    sn = nn.utils.parametrizations.spectral_norm if api == 'parametrizations' else nn.utils.spectral_norm
    set_seed(0)
    learn = gan_learner(gan_dls(ring_data(1_000), nz=2, bs=100), mlp_generator(), mlp_critic())
    learn.model.critic[0][0] = sn(nn.Linear(2, 128))
    with learn.no_bar(), learn.no_logging(): learn.fit(1, 1e-3, cbs=PackingCallback(2))
    first = learn.model.critic.critic[0][0]
    assert first.in_features == 4
    if api == 'parametrizations': assert nn.utils.parametrize.is_parametrized(first, 'weight')
    else: assert hasattr(first, 'weight_orig')
    first.eval()
    assert torch.linalg.matrix_norm(first.weight.detach(), 2).item() == pytest.approx(1., abs=0.05)


def test_packing_widens_a_spectrally_normalised_conv():
    "dcgan_critic(norm='spectral') built for single samples: its first SN conv is widened and stays SN."
    from gan_conditioning.models import gan_learner, dcgan_generator
    from gan_conditioning.data import load_mnist
    set_seed(0)
    x = load_mnist(download=False, verbose=False, n=320).images
    learn = gan_learner(gan_dls(x, nz=16, bs=32), dcgan_generator(nz=16, width=8), dcgan_critic(width=8, norm='spectral'))
    with learn.no_bar(), learn.no_logging(): learn.fit(1, 2e-4, cbs=PackingCallback(2))
    first = learn.model.critic.critic[0]
    assert type(first).__name__ == 'ParametrizedConv2d' and first.in_channels == 2
    assert learn.model.critic(x[:8]).shape == (4,)
