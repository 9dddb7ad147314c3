import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from worker.sipat.attacks import _input_grad, fgsm_rs_attack, n_fgsm_attack, pgd_attack
from worker.sipat.models import build_model


def _setup(seed, masked, per_pixel):
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = build_model("small_cnn", 3, 2, 8)
    x = torch.rand(6, 2, 8, 8, generator=g)
    x[0] = 0.0  # images on the border of [0, 1]
    x[1] = 1.0
    y = torch.randint(0, 3, (6,), generator=g)
    m = (torch.rand(6, 1, 8, 8, generator=g) < 0.5).float() if masked else None
    eps = torch.rand(6, 2, 8, 8, generator=g) * 0.1 if per_pixel else 8 / 255
    return model, x, y, m, eps


@settings(max_examples=15, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    masked=st.booleans(),
    per_pixel=st.booleans(),
    steps=st.integers(1, 4),
)
def test_pgd_invariants(seed, masked, per_pixel, steps):
    model, x, y, m, eps = _setup(seed, masked, per_pixel)
    x_adv = pgd_attack(
        model, x, y, eps, 2 / 255, steps, step_mask=m, generator=torch.Generator().manual_seed(1)
    )
    eps_t = torch.as_tensor(eps).expand_as(x)
    assert ((x_adv - x).abs() <= eps_t + 1e-6).all()
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    if m is not None:
        frozen = (m == 0).expand_as(x)
        assert torch.equal(x_adv[frozen], x[frozen])


def test_fgsm_rs_respects_mask_and_budget():
    model, x, y, m, _ = _setup(3, True, False)
    x_adv = fgsm_rs_attack(model, x, y, 8 / 255, step_mask=m)
    assert ((x_adv - x).abs() <= 8 / 255 + 1e-6).all()
    frozen = (m == 0).expand_as(x)
    assert torch.equal(x_adv[frozen], x[frozen])
    assert (x_adv != x).any()


@settings(max_examples=15, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    masked=st.booleans(),
    per_pixel=st.booleans(),
    noise_ratio=st.sampled_from([0.0, 1.0, 2.0]),
    alpha_ratio=st.sampled_from([0.5, 1.0, 1.25]),
)
def test_n_fgsm_invariants(seed, masked, per_pixel, noise_ratio, alpha_ratio):
    """N-FGSM's box is (noise + alpha) * eps, not eps; images stay in [0, 1]; mask holds."""
    model, x, y, m, eps = _setup(seed, masked, per_pixel)
    g = torch.Generator().manual_seed(seed)
    x_adv = n_fgsm_attack(
        model, x, y, eps, noise_ratio=noise_ratio, alpha_ratio=alpha_ratio, step_mask=m, generator=g
    )
    bound = torch.as_tensor(eps).expand_as(x) * (noise_ratio + alpha_ratio)
    assert ((x_adv - x).abs() <= bound + 1e-6).all()
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    if m is not None:
        frozen = (m == 0).expand_as(x)
        assert torch.equal(x_adv[frozen], x[frozen])


def test_n_fgsm_goes_beyond_eps_and_without_noise_is_fgsm():
    model, x, y, _, _ = _setup(5, False, False)
    eps = 8 / 255
    wide = n_fgsm_attack(model, x, y, eps, generator=torch.Generator().manual_seed(0))
    inner = (x > 3 * eps) & (x < 1 - 3 * eps)  # pixels the [0, 1] clip cannot reach
    assert (wide - x)[inner].abs().max() > 1.5 * eps  # the noise box is 2 eps wide
    # noise 0: exactly one signed-gradient step of alpha_ratio * eps from x, clipped to [0, 1]
    plain = n_fgsm_attack(model, x, y, eps, noise_ratio=0.0, alpha_ratio=1.0)
    model.eval()
    expected = (x + eps * _input_grad(model, x, y).sign()).clamp(0, 1)
    assert torch.allclose(plain, expected, atol=1e-7)


def test_adversarial_loss_not_below_clean_on_average():
    gaps = []
    for seed in range(8):
        model, x, y, m, _ = _setup(seed, False, False)
        x_adv = pgd_attack(model, x, y, 8 / 255, 2 / 255, 5)
        with torch.no_grad():
            gaps.append(float(F.cross_entropy(model(x_adv), y) - F.cross_entropy(model(x), y)))
    assert sum(gaps) / len(gaps) > 0


def test_mode_restored_and_no_parameter_grad():
    model, x, y, _, _ = _setup(0, False, False)
    for mode in (True, False):
        model.train(mode)
        pgd_attack(model, x, y, 8 / 255, 2 / 255, 2)
        assert model.training is mode
        assert all(p.grad is None for p in model.parameters())


def test_matches_torchattacks_pgd():
    import torchattacks

    from worker.sipat.benchmark_data import salience_benchmark
    from worker.sipat.evaluate import predict

    data = salience_benchmark(n_train=96, n_test=400, image_size=12, region=4, seed=2)

    torch.manual_seed(0)
    model = build_model("small_cnn", 4, 3, 12)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    x, _, _, y = data.train.batch(torch.arange(96))
    for _ in range(30):  # a little training so accuracy is not trivial
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    model.eval()
    xt, _, _, yt = data.test.batch(torch.arange(400))
    eps = 2 / 255
    ours = float((predict(model, pgd_attack(model, xt, yt, eps, eps / 4, 20)) == yt).float().mean())
    atk = torchattacks.PGD(model, eps=eps, alpha=eps / 4, steps=20, random_start=True)
    theirs = float((predict(model, atk(xt, yt)) == yt).float().mean())
    clean = float((predict(model, xt) == yt).float().mean())
    assert ours < clean or clean == 0
    assert abs(ours - theirs) <= 0.01  # within 1 point


def test_eval_mode_batchnorm_is_the_same_function():
    """eval_mode computes BatchNorm as an affine map: outputs, input gradients and the
    double-backward parameter gradients IGD needs equal the native kernel's; nested blocks
    and the model's mode are restored."""
    from worker.sipat.attacks import eval_mode
    from worker.sipat.methods import true_logit_input_grad

    for name in ("small_cnn", "preact_resnet18"):
        torch.manual_seed(0)
        model = build_model(name, 3, 3, 16)
        with torch.no_grad():  # non-trivial running statistics
            for _ in range(3):
                model(torch.rand(8, 3, 16, 16) * 2 + 0.3)
        x, y = torch.rand(4, 3, 16, 16), torch.tensor([0, 1, 2, 0])

        def igd_grads(g, model=model):
            loss = g.square().sum()
            grads = torch.autograd.grad(loss, list(model.parameters()), allow_unused=True)
            return [t for t in grads if t is not None]

        model.eval()  # the native kernel
        ref_out = model(x)
        ref_g = true_logit_input_grad(model, x, y, create_graph=True)
        ref_p = igd_grads(ref_g)
        model.train()
        with eval_mode(model):
            with eval_mode(model):  # nested: the inner block leaves the outer patch alone
                pass
            assert any("forward" in m.__dict__ for m in model.modules())
            out = model(x)
            g = true_logit_input_grad(model, x, y, create_graph=True)
            p = igd_grads(g)
        assert model.training and not any("forward" in m.__dict__ for m in model.modules())
        assert torch.allclose(out, ref_out, atol=1e-5)
        assert torch.allclose(g, ref_g, atol=1e-6, rtol=1e-4)
        for a, b in zip(p, ref_p, strict=True):
            assert torch.allclose(a, b, atol=1e-5, rtol=1e-3)
