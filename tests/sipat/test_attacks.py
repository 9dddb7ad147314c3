import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from worker.sipat.attacks import fgsm_rs_attack, pgd_attack
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
