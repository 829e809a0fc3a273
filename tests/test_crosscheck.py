"""Numerical cross-checks of the geometry routines against independent, slow computations."""
import math, numpy as np, pytest, torch, torch.nn as nn
from gan_conditioning.all import *

per_pixel_jacobian = jacobian_per_pixel  # the slow reverse-mode reference (google/compare_gan's method)

def reference_log_cond(G, z):
    J = per_pixel_jacobian(G, z).double().numpy()
    return np.log(np.linalg.cond(J.transpose(0, 2, 1) @ J))

@pytest.mark.parametrize('norm', ['batch', None])
def test_log_condition_number_matches_per_pixel_reverse_mode(norm):
    torch.manual_seed(0)
    G = dcgan_generator(nz=32, width=16, norm=norm)
    with torch.no_grad():  # non-trivial batch-norm statistics, used in eval mode
        G.train(); G(torch.randn(256, 32))
    z = torch.randn(6, 32)
    ours, ref = log_condition_number(G, z, chunk_size=7).double().numpy(), reference_log_cond(G, z)
    np.testing.assert_allclose(ours, ref, rtol=1e-4)
    assert G.training  # mode restored

def test_jacobian_matches_reverse_mode_and_accepts_image_shaped_latents():
    torch.manual_seed(1)
    G = dcgan_generator(nz=16, width=8)
    z = torch.randn(3, 16)
    J = jacobian(G, z.view(3, 16, 1, 1), chunk_size=16)
    assert J.shape == (3, 784, 16)
    torch.testing.assert_close(J, per_pixel_jacobian(G, z), rtol=1e-4, atol=1e-6)

def test_log_condition_number_closed_form_linear_generator():
    torch.manual_seed(2)
    U, _ = torch.linalg.qr(torch.randn(40, 10, dtype=torch.float64))
    V, _ = torch.linalg.qr(torch.randn(10, 10, dtype=torch.float64))
    s = torch.logspace(2, -1, 10, dtype=torch.float64)
    G = nn.Linear(10, 40, bias=True)
    with torch.no_grad(): G.weight.copy_((U @ torch.diag(s) @ V.T).float())
    lc = log_condition_number(G, torch.randn(5, 10))
    np.testing.assert_allclose(lc.numpy(), 2 * math.log(1e2 / 1e-1), rtol=1e-4)
    ev = metric_eigvals(G, torch.randn(2, 10))
    np.testing.assert_allclose(ev[0].numpy(), (s ** 2).numpy(), rtol=1e-3)

def test_metric_tensor_eigvals_agree_with_float64_eigendecomposition():
    torch.manual_seed(3)
    G = mlp_generator(nz=2, n_out=2)
    z = torch.randn(50, 2)
    M = metric_tensor(G, z).double()
    np.testing.assert_allclose(metric_eigvals(G, z).numpy(), torch.linalg.eigvalsh(M).flip(-1).numpy(), rtol=1e-4, atol=1e-8)
    J = per_pixel_jacobian(G, z).double()
    np.testing.assert_allclose(M.numpy(), (J.transpose(1, 2) @ J).numpy(), rtol=1e-4, atol=1e-7)

def test_clamp_quotient_by_brute_force():
    "Q from the callback's single concatenated forward equals two separate forwards in eval mode."
    torch.manual_seed(4)
    G = dcgan_generator(nz=16, width=8).eval()
    z = torch.randn(5, 16)
    torch.manual_seed(5); pen, Q = jacobian_clamp_penalty(G, z, eps=.5, lambda_min=2., lambda_max=3.)
    torch.manual_seed(5); z2 = perturb(z, .5)
    with torch.no_grad():
        q_ref = torch.stack([(G(z[i:i+1]) - G(z2[i:i+1])).norm() / (z[i] - z2[i]).norm() for i in range(5)])
    torch.testing.assert_close(Q.detach(), q_ref, rtol=1e-5, atol=1e-6)
    ref_pen = sum(max(q - 3., 0.) ** 2 + min(q - 2., 0.) ** 2 for q in q_ref.tolist()) / 5
    assert abs(pen.item() - ref_pen) <= 1e-5 * max(1., ref_pen)
