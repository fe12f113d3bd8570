import numpy as np
import pytest

from recgoat_jax.data.dataset import CSR
from recgoat_jax.data.sampler import BPRSampler


def _train(seed=0, n_users=50, n_items=30):
    rng = np.random.default_rng(seed)
    pairs = {(u, i) for u in range(n_users) for i in rng.choice(n_items, 8, replace=False)}
    u, i = np.array(sorted(pairs)).T
    return CSR.from_pairs(u, i, n_users), n_items


def test_epoch_covers_every_interaction_once_and_pads():
    train, n_items = _train()
    s = BPRSampler(train, n_items, batch_size=64, seed=3)
    b = s.epoch(0)
    assert b.users.shape == (s.n_steps, 64) and s.n_steps == -(-train.nnz // 64)
    real = b.weight.reshape(-1) > 0
    assert real.sum() == train.nnz == 400
    got = sorted(zip(b.users.reshape(-1)[real], b.pos.reshape(-1)[real]))
    assert got == sorted(zip(*train.to_pairs()))
    assert np.all(b.weight.reshape(-1)[~real] == 0)


def test_negatives_exclude_train_items():
    train, n_items = _train()
    s = BPRSampler(train, n_items, batch_size=100, seed=1)
    for epoch in range(5):
        b = s.epoch(epoch)
        real = b.weight > 0
        for u, n in zip(b.users[real], b.neg[real]):
            assert n not in set(train.row(u).tolist())


def test_negatives_may_hit_train_items_when_allowed():
    train, n_items = _train()
    s = BPRSampler(train, n_items, batch_size=100, seed=1, exclude_train=False)
    b = s.epoch(0)
    hits = s.is_train(b.users[b.weight > 0], b.neg[b.weight > 0])
    # 8 of 30 items are positives: about 27% of uniform draws collide.
    assert 0.15 < hits.mean() < 0.40


def test_deterministic_per_seed_and_epoch():
    train, n_items = _train()
    a = BPRSampler(train, n_items, 64, seed=5)
    b = BPRSampler(train, n_items, 64, seed=5)
    np.testing.assert_array_equal(a.epoch(2).neg, b.epoch(2).neg)
    assert not np.array_equal(a.epoch(2).neg, a.epoch(3).neg)
    assert not np.array_equal(a.epoch(2).users, BPRSampler(train, n_items, 64, seed=6).epoch(2).users)


def test_drop_last():
    train, n_items = _train()
    s = BPRSampler(train, n_items, batch_size=64, drop_last=True)
    b = s.epoch(0)
    assert b.users.shape == (400 // 64, 64) and np.all(b.weight == 1)


def test_user_with_every_item_is_an_error():
    train = CSR.from_pairs(np.array([0, 0, 1]), np.array([0, 1, 0]), 2)
    with pytest.raises(ValueError, match="user 0"):
        BPRSampler(train, 2, 4)
