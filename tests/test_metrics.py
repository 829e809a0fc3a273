"Numerical cross-checks of `gan_conditioning.metrics` against independent implementations, and the plumbing the notebook cannot show."
import math, time, warnings
from collections import Counter
from pathlib import Path
import numpy as np, pytest, torch
from scipy.stats import entropy
from pytorch_fid.fid_score import calculate_frechet_distance
from gan_conditioning.data import load_mnist, ring_centers, ring_data, grid_centers, stacked_mnist, gan_dls
from gan_conditioning.models import gan_learner, mlp_generator, mlp_critic
from gan_conditioning.geometry import eval_mode
import gan_conditioning.metrics as M
from gan_conditioning.metrics import *


@pytest.fixture(scope='module')
def digits(): return load_mnist(download=False, verbose=False)

@pytest.fixture(scope='module')
def clf(): return mnist_classifier(device='cpu')

def _random_cov(rng, d, n):
    a = rng.standard_normal((n, d)) @ rng.standard_normal((d, d)) / np.sqrt(d)
    return np.cov(a, rowvar=False)


# --- Fréchet distance -------------------------------------------------------------------------------

def test_frechet_matches_pytorch_fid_2048():
    rng = np.random.default_rng(1)
    d = 2048
    m1, m2 = rng.standard_normal(d), rng.standard_normal(d)
    s1, s2 = _random_cov(rng, d, 3 * d), _random_cov(rng, d, 3 * d)
    t = time.perf_counter(); ref = calculate_frechet_distance(m1, s1, m2, s2); t_ref = time.perf_counter() - t
    t = time.perf_counter(); ours = frechet_distance(m1, s1, m2, s2); t_ours = time.perf_counter() - t
    assert abs(ours - ref) <= 1e-4 * abs(ref), (ours, ref)
    print(f"d=2048: pytorch-fid {t_ref:.2f} s, ours {t_ours:.2f} s ({t_ref / t_ours:.1f}x)")

@pytest.mark.parametrize('d,n1,n2', [(64, 300, 500), (256, 1000, 400), (256, 100, 1000)])  # the last: singular sigma1
def test_frechet_matches_pytorch_fid_random(d, n1, n2):
    rng = np.random.default_rng(d + n1)
    m1, m2 = rng.standard_normal(d), 0.1 * rng.standard_normal(d)
    s1, s2 = _random_cov(rng, d, n1), _random_cov(rng, d, n2)
    ref = calculate_frechet_distance(m1, s1, m2, s2)
    assert abs(frechet_distance(m1, s1, m2, s2) - ref) <= 1e-4 * abs(ref)

def test_frechet_matches_pytorch_fid_real_features(digits, clf):
    x = digits.images[torch.randperm(len(digits.images), generator=torch.Generator().manual_seed(0))]
    f1, f2 = (classifier_outputs(h, clf)[0].double().numpy() for h in (x[:2500], x[2500:]))
    stats = [(f.mean(0), np.cov(f, rowvar=False)) for f in (f1, f2)]
    ref = calculate_frechet_distance(*stats[0], *stats[1])
    assert abs(frechet_distance(*stats[0], *stats[1]) - ref) <= 1e-4 * abs(ref)
    assert abs(features_frechet(torch.from_numpy(f1), torch.from_numpy(f2)) - ref) <= 1e-4 * abs(ref)
    # real halves are closer to each other than real digits to a 0s-and-1s generator
    f01 = classifier_outputs(digits.images[digits.labels < 2], clf)[0]
    assert features_frechet(f01, torch.from_numpy(f2)) > 10 * ref

def test_frechet_symmetric_and_zero():
    rng = np.random.default_rng(0)
    m1, m2, s1, s2 = rng.standard_normal(32), rng.standard_normal(32), _random_cov(rng, 32, 100), _random_cov(rng, 32, 100)
    assert abs(frechet_distance(m1, s1, m2, s2) - frechet_distance(m2, s2, m1, s1)) < 1e-9 * frechet_distance(m1, s1, m2, s2)
    assert abs(frechet_distance(m1, s1, m1, s1)) < 1e-9 * np.trace(s1)
    # 1-D Gaussians: (m1-m2)^2 + (sd1-sd2)^2
    assert math.isclose(frechet_distance([1.], [[4.]], [3.], [[9.]]), 4 + 1, rel_tol=1e-12)

def test_frechet_bad_input():
    with pytest.raises(ValueError, match='same d'): frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
    with pytest.raises(ValueError, match='NaN or inf'): frechet_distance(np.zeros(2), np.full((2, 2), np.nan), np.zeros(2), np.eye(2))
    with pytest.raises(ValueError, match='not symmetric'): frechet_distance(np.zeros(2), np.array([[1., 2], [0, 1]]), np.zeros(2), np.eye(2))
    with pytest.raises(ValueError, match='at least 2 samples'): feature_stats(torch.randn(1, 4))
    with pytest.raises(ValueError, match='NaN or inf'): feature_stats(torch.tensor([[0., 1], [float('inf'), 0]]))
    with pytest.warns(UserWarning, match='covariance is singular'): feature_stats(torch.randn(5, 10))


# --- 2-D mixtures ---------------------------------------------------------------------------------------

def _mode_stats_loop(samples, centers, std, threshold=3.):
    counts, n_hq = [0] * len(centers), 0
    for x in samples.tolist():
        d = [math.dist(x, c) for c in centers.tolist()]
        k = min(range(len(d)), key=d.__getitem__)
        if d[k] / std < threshold: counts[k] += 1; n_hq += 1
    q = np.array(counts) / max(n_hq, 1)
    rkl = entropy(q, np.full(len(q), 1 / len(q))) if n_hq else float('nan')
    return sum(c > 0 for c in counts), n_hq / len(samples), rkl

@pytest.mark.parametrize('seed', range(4))
def test_mode_stats_matches_loop(seed):
    g = torch.Generator().manual_seed(seed)
    centers = grid_centers() if seed % 2 else ring_centers()
    std = 0.05 if seed % 2 else 0.01
    keep = torch.randperm(len(centers), generator=g)[:len(centers) // 2 + seed]  # a generator that misses modes
    idx = keep[torch.randint(len(keep), (1500,), generator=g)]
    x = centers[idx] + std * (1 + seed) * torch.randn(1500, 2, generator=g)  # wider than the modes: some low-quality samples
    ours, ref = mode_stats(x, centers, std), _mode_stats_loop(x, centers, std)
    assert ours.modes == ref[0] and math.isclose(ours.hq, ref[1], rel_tol=1e-12)
    assert math.isclose(ours.rkl, ref[2], rel_tol=1e-9, abs_tol=1e-12)
    assert ours.modes <= len(keep)

def test_mode_stats_real_ring():
    st = mode_stats(ring_data(2500, seed=3), ring_centers(), 0.01)
    assert st.modes == 8 and abs(st.hq - (1 - math.exp(-4.5))) < 0.006 and st.rkl < 0.01
    assert mode_stats(ring_centers()[:1].expand(100, 2)) == ModeStats(1, 1., math.log(8))

def test_kl_to_uniform_matches_scipy():
    rng = np.random.default_rng(0)
    for k in (2, 8, 1000):
        c = rng.integers(0, 5, k); c[0] += 1
        assert math.isclose(kl_to_uniform(torch.from_numpy(c)), entropy(c / c.sum(), np.full(k, 1 / k)), rel_tol=1e-9, abs_tol=1e-12)
    with pytest.raises(ValueError): kl_to_uniform(torch.tensor([-1, 2]))


# --- MNIST classifier, Stacked MNIST, classifier scores ----------------------------------------------------

def test_shipped_classifier(digits, clf):
    path = Path(M.__file__).parent / 'mnist_classifier.pt'
    assert path.stat().st_size < 500_000
    train, test = mnist_split(digits, clf.meta['n_test'], clf.meta['split_seed'])
    assert len(train.images) == clf.meta['n_train']
    assert classifier_accuracy(clf, test) >= 0.96
    f, logits = classifier_outputs(test.images[:7], clf)
    assert f.shape == (7, 64) and logits.shape == (7, 10)
    torch.testing.assert_close(logits, clf(test.images[:7]).detach())

def test_stacked_mnist_stats_matches_counter(digits, clf):
    _, test = mnist_split(digits)
    x, labels = stacked_mnist(4000, digits=test, seed=1)
    with pytest.warns(UserWarning, match='biased upwards'): st = stacked_mnist_stats(x, clf, batch_size=777)
    with torch.no_grad(): d = [clf(x[:, c:c + 1]).argmax(1).tolist() for c in range(3)]
    cnt = Counter(100 * a + 10 * b + c for a, b, c in zip(*d))
    q = np.zeros(1000); q[list(cnt)] = list(cnt.values())
    assert st.modes == len(cnt)
    assert math.isclose(st.kl, entropy(q / q.sum(), np.full(1000, 1e-3)), rel_tol=1e-9)
    assert (stacked_mnist_modes(x, clf) == labels).double().mean() > 0.9

def test_score_from_probs_matches_numpy():
    rng = np.random.default_rng(0)
    logits = 3 * rng.standard_normal((997, 12))
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    for splits in (1, 10):
        scores = [np.exp(np.mean(np.sum(part * (np.log(part) - np.log(part.mean(0, keepdims=True))), 1)))
                  for part in np.array_split(p, splits)]
        ours = score_from_probs(torch.from_numpy(p), splits)
        assert math.isclose(ours.mean, np.mean(scores), rel_tol=1e-10) and math.isclose(ours.std, np.std(scores), rel_tol=1e-8, abs_tol=1e-12)

def test_classifier_scores(digits, clf):
    x = digits.images[torch.randperm(len(digits.images), generator=torch.Generator().manual_seed(0))]
    assert classifier_score(x[:2000], clf).mean > 9
    r = mnist_scores(digits.images[digits.labels == 3], x[2500:], clf)
    assert r['cls_score'] < 1.5 and r['min_class'] == 0
    assert mnist_scores(x[:2500], x[2500:], clf)['min_class'] > 150

@pytest.mark.parametrize('bad,msg', [
    (lambda d: d[:, 0], 'Add the channel axis'),
    (lambda d: (d + 1) * 127.5, 'x / 127.5 - 1'),
    (lambda d: d.expand(-1, 3, -1, -1), 'must be (N, 1, 28, 28)'),
    (lambda d: torch.where(torch.arange(len(d)).view(-1, 1, 1, 1) == 2, float('nan'), d), '1 of 10 images contain NaN'),
])
def test_bad_images(digits, clf, bad, msg):
    with pytest.raises(ValueError, match=msg.replace('(', r'\(').replace(')', r'\)').replace('*', r'\*')):
        classifier_score(bad(digits.images[:10]), clf, splits=1)

def test_01_images_warn(digits, clf):
    with pytest.warns(UserWarning, match='2 \\* x - 1'): classifier_outputs((digits.images[:10] + 1) / 2, clf)


# --- Inception plumbing (random weights) -----------------------------------------------------------------

@pytest.fixture(scope='module')
def inc(): return InceptionFeatures(weights='random', device='cpu')

def test_inception_shapes_batching_determinism(inc, digits):
    x = digits.images[:3]
    pool, logits = inc.extract(x, batch_size=3, progress=False)
    assert pool.shape == (3, 2048) and logits.shape == (3, 1008) and torch.isfinite(pool).all() and (pool >= 0).all()
    pool2, logits2 = inc.extract(x, batch_size=2, progress=False)
    torch.testing.assert_close(pool2, pool, rtol=1e-4, atol=1e-5); torch.testing.assert_close(logits2, logits, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(inc.extract(x, batch_size=3, progress=False)[0], pool, rtol=0, atol=0)  # deterministic
    assert not torch.allclose(pool[0], pool[1])

def test_inception_range_matches_torchvision_forward(inc):
    # independent path: torchvision's own Inception3 forward on the [-1, 1] input InceptionV3 would compute
    torch.manual_seed(0); x = torch.rand(2, 3, 40, 40) * 2 - 1
    with torch.random.fork_rng():
        torch.manual_seed(0); net = M._fid_inception_net(None).eval()
    x299 = torch.nn.functional.interpolate((x + 1) / 2, size=(299, 299), mode='bilinear', align_corners=False) * 2 - 1
    with torch.no_grad(): ref = net(x299)
    torch.testing.assert_close(inc.extract(x, progress=False)[1], ref, rtol=1e-4, atol=1e-4)

def test_inception_weights_file_is_loaded(tmp_path, inc, digits):
    with torch.random.fork_rng():
        torch.manual_seed(0); sd = M._fid_inception_net(None).state_dict()
    path = tmp_path / 'weights.pth'; torch.save(sd, path)
    loaded = InceptionFeatures(weights=path, device='cpu')
    torch.testing.assert_close(loaded.extract(digits.images[:2], progress=False)[0], inc.extract(digits.images[:2], progress=False)[0])
    other = InceptionFeatures(weights='random', seed=1, device='cpu')
    assert not torch.allclose(other.extract(digits.images[:1], progress=False)[0], inc.extract(digits.images[:1], progress=False)[0])

def test_missing_weights_error_is_fast_and_clear(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, 'get_dir', lambda: str(tmp_path))
    def no_download(*a, **k): raise AssertionError('tried to download')
    monkeypatch.setattr(torch.hub, 'load_state_dict_from_url', no_download)
    t = time.perf_counter()
    with pytest.raises(FileNotFoundError) as e: InceptionFeatures(download=False)
    msg = str(e.value)
    from pytorch_fid.inception import FID_WEIGHTS_URL
    for part in ('pt_inception-2015-12-05-6726825d.pth', str(tmp_path / 'checkpoints'), FID_WEIGHTS_URL, "weights='random'"):
        assert part in msg, part
    monkeypatch.setattr(M, '_online', lambda *a, **k: False)
    with pytest.raises(FileNotFoundError, match='network unreachable'): InceptionFeatures()
    with pytest.raises(FileNotFoundError, match='nope.pth'): InceptionFeatures(weights=tmp_path / 'nope.pth')
    assert time.perf_counter() - t < 10

def test_inception_score_and_fid_plumbing(inc, digits):
    x = digits.images[:4]
    s = inception_score(x, inc, splits=2, progress=False)
    pool, logits = inc.extract(x, progress=False)
    assert math.isclose(s.mean, score_from_probs(logits.softmax(1), 2).mean, rel_tol=1e-9) and s.mean >= 1
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        assert abs(fid(x, x, inc, progress=False)) < 1e-3 * pool.var(0).sum().item()
        assert math.isclose(fid(x[:2], feature_stats(pool), inc, progress=False), features_frechet(pool[:2], pool), rel_tol=1e-6)
    with pytest.raises(ValueError, match=r'\(N, 1 or 3, H, W\)'): inc.extract(torch.zeros(2, 2, 28, 28), progress=False)


# --- the callback ------------------------------------------------------------------------------------------

def test_sample_metrics_callback_ring():
    torch.manual_seed(0)
    learn = gan_learner(gan_dls(ring_data(2000), nz=2, bs=100), mlp_generator(), mlp_critic())
    cb = ring_metrics(n_samples=500, every=2)
    with learn.no_bar(), learn.no_logging(): learn.fit(4, 1e-3, cbs=cb)
    h = learn.sample_metrics.df
    assert list(h['epoch']) == [0, 1, 3]  # before training, then after every second epoch
    assert list(h['iter']) == [0, 38, 76]
    z0 = cb.z.clone()
    with eval_mode(learn.model.generator), torch.no_grad(): x = learn.model.generator(cb.z)
    np.testing.assert_equal(np.array(mode_stats(x), dtype=float), h.iloc[-1][['modes', 'hq', 'rkl']].to_numpy(float))  # nan == nan here
    assert learn.recorder.values[-1][-1] == h['hq'].iloc[-1]  # last epoch's column shows the last measurement
    assert 'hq' not in learn.metrics.attrgot('name')
    with learn.no_bar(), learn.no_logging(): learn.fit(1, 1e-3, cbs=cb)
    assert torch.equal(cb.z, z0)  # the same fixed latents in every fit

def test_sample_metrics_callback_refuses_plain_learner():
    from fastai.learner import Learner
    plain = Learner(gan_dls(ring_data(1000), nz=2, bs=100), mlp_generator(), loss_func=torch.nn.MSELoss())
    with pytest.raises(ValueError, match='needs a fastai GANLearner'):
        with plain.no_bar(), plain.no_logging(): plain.fit(1, cbs=ring_metrics())
