"Precision, recall, density and coverage against the reference implementation (PyPI's `prdc`, clovaai/generative-evaluation-prdc) on the same features."
import contextlib, io, re
import numpy as np, pytest, torch
from gan_conditioning.manifold import manifold_scores, precision_recall, density_coverage, knn_radii

prdc = pytest.importorskip('prdc', reason="the reference implementation: pip install -e '.[dev]'")

def _reference(real, fake, k):
    with contextlib.redirect_stdout(io.StringIO()): return prdc.compute_prdc(real, fake, k)   # it prints the sizes

@pytest.mark.parametrize('n,m,d,k,shift', [(500, 400, 8, 3, 0.3), (300, 600, 64, 5, 1.0), (400, 400, 2, 5, 0.0), (64, 50, 2048, 3, 0.1)])
def test_matches_prdc(n, m, d, k, shift):
    rng = np.random.default_rng(n + d)
    real, fake = rng.normal(size=(n, d)), rng.normal(shift, 1.2, size=(m, d))   # float64: the reference then compares in float64 too
    ref = _reference(real, fake, k)
    ours = manifold_scores(torch.from_numpy(real), torch.from_numpy(fake), k, k)
    for name in ('precision', 'recall', 'density', 'coverage'): assert abs(getattr(ours, name) - ref[name]) <= 1e-6, (name, getattr(ours, name), ref[name])
    assert precision_recall(real, fake, k) == (ours.precision, ours.recall) and density_coverage(real, fake, k) == (ours.density, ours.coverage)

def test_clusters_and_duplicates_match_prdc():
    "Mixtures with tight clusters (the ring's, σ = 0.01) and exact duplicate rows, where ties and zero radii happen."
    from gan_conditioning.data import ring_data
    real, fake = ring_data(1_000, seed=1).double(), ring_data(800, std=0.03, seed=2).double()
    fake[:100] = fake[0]          # a hundred copies of one sample: its radius is 0
    ref, ours = _reference(real.numpy(), fake.numpy(), 5), manifold_scores(real, fake, 5, 5)
    for name in ref: assert abs(getattr(ours, name) - ref[name]) <= 1e-6, name
    same = torch.ones(50, 4)      # prdc issue #7: identical points, radius 0, nothing strictly inside
    assert manifold_scores(same, same) == (0., 0., 0., 0.)

def test_chunks_do_not_change_the_numbers():
    x, y = torch.randn(700, 16), torch.randn(900, 16) + 0.2
    assert manifold_scores(x, y, budget=50_000) == manifold_scores(x, y)
    torch.testing.assert_close(knn_radii(x, 4, budget=10_000), knn_radii(x, 4))

@pytest.mark.parametrize('real,fake,message', [
    (torch.randn(3, 2), torch.randn(10, 2), 'needs at least 4 samples'),
    (torch.randn(10, 2), torch.randn(3, 2), 'needs at least 4 samples'),
    (torch.randn(10, 2), torch.randn(10, 5), 'same dimension d, got 2 and 5'),
    (torch.full((10, 2), float('nan')), torch.randn(10, 2), '10 of 10 real features contain NaN'),
    (torch.randn(10, 1, 4, 4), torch.randn(10, 16), 'x.flatten(1)'),
])
def test_bad_input_is_one_line(real, fake, message):
    with pytest.raises(ValueError, match=re.escape(message)) as e: precision_recall(real, fake)
    assert '\n' not in str(e.value)
