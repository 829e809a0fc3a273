"Class-conditional GANs (issue 23): every callback on G(z, y) and D(x, y), checked against independent computations."
import io, warnings
from pathlib import Path
import numpy as np, pytest, torch, torch.nn as nn
from unittest.mock import patch
from fastai.learner import load_learner
from fastai.torch_core import set_seed
from fastai.vision.gan import GANLoss
from gan_conditioning.all import *
from gan_conditioning.conditional import CondGANLoss, SlotEmbedding, CondBatchNorm

warnings.filterwarnings('ignore', message='You are shadowing an attribute')

def ring_cdls(n=2_000, bs=100):
    x, y = ring_data(n, labels=True)
    return gan_dls(x, nz=2, bs=bs, labels=y, centers=ring_centers())

def quiet_fit(learn, epochs=1, lr=1e-3, cbs=None):
    with learn.no_bar(), learn.no_logging(): learn.fit(epochs, lr, cbs=cbs)
    return learn

class Recording(nn.Module):
    "Wraps a generator and keeps the (z, y) of every training-mode call."
    def __init__(self, G): super().__init__(); self.G, self.calls, self.n_classes = G, [], G.n_classes
    def forward(self, z, y):
        if self.training: self.calls.append((z.detach().clone(), y.clone()))
        return self.G(z, y)

def test_unconditional_loss_path_is_fastais():
    "CondGANLoss without conditions trains exactly as fastai's GANLoss: the same weights bit for bit."
    def train(loss_cls):
        set_seed(0)
        with patch('gan_conditioning.models.CondGANLoss', loss_cls):
            learn = gan_learner(gan_dls(ring_data(1_000), nz=2, bs=100), mlp_generator(), mlp_critic())
        assert type(learn.loss_func) is loss_cls
        quiet_fit(learn, 2, cbs=[JacobianClampCallback()])
        return [p.detach().clone() for p in learn.model.parameters()]
    for a, b in zip(train(GANLoss), train(CondGANLoss)): assert torch.equal(a, b)

def test_jacobian_clamp_keeps_the_class():
    "JC's generator steps see [z; z'] with [y; y]: the perturbation moves the latent only."
    set_seed(0)
    G = Recording(mlp_generator(n_classes=8))
    jc = JacobianClampCallback(eps=0.5)
    quiet_fit(gan_learner(ring_cdls(), G, mlp_critic(n_classes=8)), cbs=[jc])
    doubled = [(z, y) for z, y in G.calls if len(z) == 200]
    assert len(doubled) == len(jc.q_values) > 0
    for z, y in doubled:
        assert torch.equal(y[:100], y[100:])
        torch.testing.assert_close((z[100:] - z[:100]).norm(dim=1), torch.full((100,), 0.5), rtol=1e-5, atol=1e-6)

def test_condition_number_per_class_matches_a_slow_reference():
    set_seed(0)
    learn = quiet_fit(gan_learner(ring_cdls(), mlp_generator(n_classes=8), mlp_critic(n_classes=8)), cbs=[ConditionNumberCallback(n_z=16)])
    cb = learn.condition_number
    test_y = torch.arange(16) % 8
    assert torch.equal(cb.y.cpu(), test_y)
    J = jacobian_per_pixel(learn.model.generator, cb.z, cb.y).double()
    s = torch.linalg.svdvals(J)
    ref = 2 * (s[:, 0].log() - s[:, -1].log())
    last = cb.history[-1]
    assert abs(last['log_cond'] - ref.mean().item()) <= 1e-4 * abs(ref.mean().item())
    for c in range(8): assert abs(last[f'log_cond[{c}]'] - ref[test_y == c].mean().item()) <= 1e-4 * max(1., abs(ref[test_y == c].mean().item()))

def test_log_condition_number_of_a_conditional_dcgan():
    set_seed(0)
    G = dcgan_generator(nz=6, width=4, n_classes=10)
    with torch.no_grad():
        for m in G.modules():
            if isinstance(m, CondBatchNorm): m.gamma.weight.uniform_(0.5, 2)
    z, y = torch.randn(5, 6), torch.tensor([0, 2, 4, 6, 8])
    s = torch.linalg.svdvals(jacobian_per_pixel(G, z, y).double())
    ref = 2 * (s[:, 0].log() - s[:, -1].log())
    torch.testing.assert_close(log_condition_number(G, z, y).double(), ref, rtol=1e-4, atol=0)
    torch.testing.assert_close(metric_tensor(G, z, y).double(), (lambda J: J.transpose(1, 2) @ J)(jacobian_per_pixel(G, z, y).double()), rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match='one row per latent'): jacobian(G, z, y[:3])

def test_packed_conditional_critic_reads_pairs():
    "A packed projection critic's output for a pack equals the projection with each slot's own embedding row."
    set_seed(0)
    learn = quiet_fit(gan_learner(ring_cdls(), mlp_generator(n_classes=8), mlp_critic(n_classes=8)), cbs=[PackingCallback(2)])
    D = learn.model.critic
    assert isinstance(D, PackedCritic) and isinstance(D.critic.embed, SlotEmbedding)
    x, y = torch.randn(6, 2), torch.tensor([1, 5, 0, 0, 7, 2])
    inner = D.critic
    phi = inner.body(x.reshape(3, 4))
    rows = inner.embed.table.weight[y.reshape(3, 2) + torch.tensor([0, 8])].sum(1)
    torch.testing.assert_close(D(x, y), inner.head(phi)[:, 0] + (rows * phi).sum(1))

def test_packing_a_critic_without_an_embedding_says_what_to_do():
    class Concat(nn.Module):
        def __init__(self): super().__init__(); self.net = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 1))
        def forward(self, x, y): return self.net(torch.cat([x, nn.functional.one_hot(y, 8).float()], 1))[:, 0]
    with pytest.raises(ValueError, match='no nn.Embedding'):
        gan_learner(ring_cdls(), mlp_generator(n_classes=8), Concat(), cbs=[PackingCallback(2)])

def test_spectral_callbacks_and_ntk_on_a_projection_critic():
    set_seed(0)
    digits = load_mnist(download=False, verbose=False)
    idx = torch.randperm(len(digits.images), generator=torch.Generator().manual_seed(0))[:640]
    dls = gan_dls(digits.images[idx], nz=8, bs=64, labels=digits.labels[idx])
    sr = SpectralRegularizationCallback('dynamic', every=1)
    cbs = [sr, SpectralMonitorCallback(every=2), CriticNTKCallback(every=2, n_real=8)]
    learn = quiet_fit(gan_learner(dls, dcgan_generator(nz=8, width=8, n_classes=10), dcgan_critic(width=8, norm='spectral', n_classes=10)), 1, 2e-4, cbs)
    assert sr.applied > 0
    assert set(learn.spectral_monitor.spectra[-1]) == {'body.0', 'body.2'}   # the embedding table is not a layer's map
    ntk = learn.critic_ntk
    assert torch.equal(ntk.y_real.cpu(), dls.valid.labels[:8]) and len(ntk.history) > 1
    # the kernel on (x, y) pairs against per-output gradients, one backward each
    D, x = learn.model.critic, torch.cat([ntk.real, generate(learn.model.generator, ntk.z, cond=ntk.y)])
    y = torch.cat([ntk.y_real, ntk.y])
    for p in D.parameters(): p.requires_grad_(True)   # the critic may be frozen after a generator step
    with eval_mode(D):
        grads = [torch.cat([g.flatten() for g in torch.autograd.grad(D(x[i:i + 1], y[i:i + 1]).sum(), list(D.parameters()))]) for i in range(len(x))]
        K_ref = torch.stack(grads) @ torch.stack(grads).T
    torch.testing.assert_close(critic_ntk(D, x, cond1=y), K_ref.detach(), rtol=1e-4, atol=1e-4)

def test_path_length_takes_each_latents_class():
    set_seed(0)
    G = Recording(mlp_generator(n_classes=8))
    pl = PathLengthCallback(interval=1)
    quiet_fit(gan_learner(ring_cdls(), G, mlp_critic(n_classes=8)), cbs=[pl])
    assert len(pl.history) > 0 and all(np.isfinite(h['pl_length']) for h in pl.history)
    gen_calls = [(z, y) for z, y in G.calls if len(z) == 50]   # the penalty's half batch, with its own labels
    assert gen_calls and all(y.max() < 8 for _, y in gen_calls)

def test_label_metrics_against_loops():
    centers = ring_centers()
    x, y = ring_data(500, labels=True, seed=3)
    y_asked = y.clone(); y_asked[:100] = (y[:100] + 1) % 8   # 100 samples land at the wrong class's mode
    st = label_mode_stats(x, y_asked, centers, 0.01)
    hq_own = [torch.norm(p - centers[c]) / 0.01 < 3 for p, c in zip(x, y_asked)]
    assert st.label_acc == pytest.approx(sum(map(bool, hq_own)) / 500)
    modes = [{int(torch.cdist(p[None], centers).argmin()) for p, c in zip(x, y_asked) if c == k} for k in range(8)]
    assert st.class_modes == pytest.approx(sum(map(len, modes)) / 8)
    logits, lab = torch.randn(300, 10), torch.randint(10, (300,))
    assert label_accuracy(logits, lab) == pytest.approx(sum(int(l.argmax() == t) for l, t in zip(logits, lab)) / 300)
    with pytest.raises(ValueError, match='one class per sample'): label_accuracy(logits, lab[:5])

def test_intra_class_frechet_is_the_mean_of_per_class_distances():
    g = torch.Generator().manual_seed(0)
    f_real, y_real = torch.randn(600, 4, generator=g), torch.arange(600) % 3
    f_fake, y_fake = torch.randn(300, 4, generator=g) + 0.5, torch.arange(300) % 3
    per = class_feature_stats(f_real, y_real)
    ref = np.mean([features_frechet(f_fake[y_fake == c], f_real[y_real == c]) for c in range(3)])
    assert intra_class_frechet(f_fake, y_fake, per) == pytest.approx(ref, rel=1e-9)
    with pytest.raises(ValueError, match='no real samples of the classes'): intra_class_frechet(f_fake, y_fake + 1, per)

def test_mnist_metrics_on_a_conditional_gan():
    set_seed(0)
    digits = load_mnist(download=False, verbose=False)
    idx = torch.randperm(len(digits.images), generator=torch.Generator().manual_seed(0))[:320]
    dls = gan_dls(digits.images[idx], nz=8, bs=64, labels=digits.labels[idx])
    cb = mnist_metrics(digits.images, labels=digits.labels, n_samples=200)
    learn = quiet_fit(gan_learner(dls, dcgan_generator(nz=8, width=8, n_classes=10), dcgan_critic(width=8, n_classes=10)), 1, 2e-4, [cb])
    last = cb.history[-1]
    x = generate(learn.model.generator, cb.z, cond=cb.y)
    feats, logits = classifier_outputs(x, mnist_classifier())
    assert last['label_acc'] == pytest.approx((logits.argmax(1) == cb.y).double().mean().item())
    assert 'label_acc' in learn.recorder.metric_names and 'intra_frechet' in learn.recorder.metric_names
    with pytest.raises(ValueError, match='labels=digits.labels'):
        quiet_fit(gan_learner(dls, dcgan_generator(nz=8, width=8, n_classes=10), dcgan_critic(width=8, n_classes=10)), 1, 2e-4,
                  [mnist_metrics(feature_stats(feats), n_samples=50)])

def test_gradient_penalty_uses_the_real_labels():
    set_seed(0)
    gp = GradientPenaltyCallback()
    quiet_fit(gan_learner(ring_cdls(), mlp_generator(n_classes=8), mlp_critic(n_classes=8), loss=wgan_loss()), cbs=[gp])
    assert len(gp.penalties) > 0 and all(np.isfinite(gp.penalties))

@pytest.mark.parametrize('bad, match', [
    (dict(labels=torch.zeros(3, dtype=torch.long)), 'one class per real sample'),
    (dict(labels=-torch.ones(2_000, dtype=torch.long)), 'classes 0, 1'),
    (dict(labels=torch.full((2_000,), 9), n_classes=8), 'below n_classes=8'),
])
def test_bad_labels(bad, match):
    with pytest.raises(ValueError, match=match): gan_dls(ring_data(2_000), nz=2, bs=100, **bad)

def test_mismatched_networks_and_loaders():
    udls, cdls = gan_dls(ring_data(2_000), nz=2, bs=100), ring_cdls()
    with pytest.raises(ValueError, match='loaders have no labels'): gan_learner(udls, mlp_generator(), mlp_critic(n_classes=8))
    with pytest.raises(ValueError, match='generator takes only the latent'): gan_learner(cdls, mlp_generator(), mlp_critic(n_classes=8))
    with pytest.raises(ValueError, match='built with n_classes=3'): gan_learner(cdls, mlp_generator(n_classes=3), mlp_critic(n_classes=8))
    with pytest.raises(ValueError, match='norm=.batch.'): dcgan_generator(n_classes=10, norm=None)

def test_export_and_show_results_of_a_conditional_learner(tmp_path):
    import matplotlib; matplotlib.use('Agg')
    set_seed(0)
    learn = quiet_fit(gan_learner(ring_cdls(), mlp_generator(n_classes=8), mlp_critic(n_classes=8)), cbs=[ConditionNumberCallback()])
    learn.show_results(); learn.dls.show_batch()
    learn.export(tmp_path / 'c.pkl')
    back = load_learner(tmp_path / 'c.pkl')
    z, y = torch.randn(5, 2), torch.arange(5)
    with eval_mode(learn.model.generator), eval_mode(back.model.generator), torch.no_grad():
        assert torch.equal(learn.model.generator(z, y), back.model.generator(z, y))
    assert back.dls.n_inp == 2
