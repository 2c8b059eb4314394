"""Mixed precision: agreement with float32, the float32 islands, loss scaling, checkpoints across precisions."""
import numpy as np
import pytest
import tensorflow as tf

from progan_tf import losses
from progan_tf.networks import Discriminator, Generator
from progan_tf.precision import resolve_jit, resolve_precision

KW = dict(resolution=16, num_channels=3, fmap_base=64, fmap_max=16, label_size=2)
CPU = {"gpus": 0, "gpu_compute_capabilities": [], "tpus": 0, "amx_bf16": False, "avx512_bf16": False}


def twins(policy):
    g32, d32 = Generator(**KW), Discriminator(**KW)
    g, d = Generator(**KW, dtype=policy), Discriminator(**KW, dtype=policy)
    g.set_weights(g32.get_weights())
    d.set_weights(d32.get_weights())
    return g32, d32, g, d


def flat(grads):
    return np.concatenate([np.ravel(g.numpy()) for g in grads])


# Tolerances (relative to the largest float32 value): images, scores, gradient cosine, gradient norm.
@pytest.mark.parametrize("policy,tol", [("mixed_bfloat16", (0.1, 0.03, 0.99, 0.03)),
                                        ("mixed_float16", (0.02, 0.005, 0.999, 0.01))])
def test_forward_and_backward_match_float32(policy, tol):
    g32, d32, g, d = twins(policy)
    z = tf.random.normal([8, g.latent_size])
    y = tf.one_hot(tf.range(8) % 2, 2)
    alpha = tf.constant(0.7)
    x32, x = g32(z, y, res=4, alpha=alpha), g(z, y, res=4, alpha=alpha)
    assert x.dtype == tf.float32                          # images leave in float32
    assert np.abs(x.numpy() - x32.numpy()).max() <= tol[0] * np.abs(x32.numpy()).max()
    s32, s = d32(x32, res=4, alpha=alpha), d(x32, res=4, alpha=alpha)
    assert s.dtype == tf.float32
    assert np.abs(s.numpy() - s32.numpy()).max() <= tol[1] * np.abs(s32.numpy()).max()

    def grads(gen, disc):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(disc(gen(z, y, res=4, alpha=alpha), res=4, alpha=alpha)[:, 0])
        return flat(tape.gradient(loss, gen.active_variables(4) + disc.active_variables(4)))
    a, b = grads(g32, d32), grads(g, d)
    assert a @ b / (np.linalg.norm(a) * np.linalg.norm(b)) > tol[2]
    assert abs(np.linalg.norm(b) / np.linalg.norm(a) - 1) < tol[3]


def test_float32_islands_under_bfloat16():
    _, _, g, d = twins("mixed_bfloat16")
    z = tf.random.normal([8, g.latent_size])
    y = tf.one_hot(tf.range(8) % 2, 2)
    reals = tf.random.uniform([8, 16, 16, 3], -1, 1)
    fn = tf.function(lambda: losses.WGANGP().d_loss(g, d, z, reals, y, res=4, alpha=tf.constant(0.5)))
    graph = fn.get_concrete_function().graph
    ops = graph.get_operations()
    convs = [op for op in ops if op.type == "Conv2D"]
    assert convs and all(op.outputs[0].dtype == tf.bfloat16 for op in convs)    # the heavy work is bfloat16
    # Pixelnorm's reduction and minibatch stddev's statistics run in float32.
    rsqrt = [op for op in ops if op.type == "Rsqrt" and "pixel_norm" in op.name]
    assert rsqrt and all(op.outputs[0].dtype == tf.float32 for op in rsqrt)
    stddev = [op for op in ops if op.type == "Sqrt" and "minibatch_stddev" in op.name]
    assert stddev and all(op.outputs[0].dtype == tf.float32 for op in stddev)
    loss, stats = fn()
    assert loss.dtype == tf.float32 and stats["mixed_norms"].dtype == tf.float32
    assert stats["gradient_penalty"].dtype == tf.float32
    assert all(v.dtype == tf.float32 for v in g.weights + d.weights)               # weights stay float32


def test_auto_choices():
    assert resolve_precision("auto", CPU)[0] == "float32"
    assert resolve_precision("auto", {**CPU, "amx_bf16": True})[0] == "mixed_bfloat16"
    assert resolve_precision("auto", {**CPU, "avx512_bf16": True})[0] == "mixed_bfloat16"
    assert resolve_precision("auto", {**CPU, "tpus": 8})[0] == "mixed_bfloat16"
    assert resolve_precision("auto", {**CPU, "gpus": 1, "gpu_compute_capabilities": [(8, 0)]})[0] == "mixed_float16"
    assert resolve_precision("auto", {**CPU, "gpus": 1, "gpu_compute_capabilities": [(6, 1)]})[0] == "float32"
    assert resolve_precision("mixed_float16", CPU) == ("mixed_float16", "set in the config")
    assert resolve_jit("auto", CPU)[0] is False and resolve_jit("auto", {**CPU, "gpus": 1})[0] is True
    with pytest.raises(ValueError, match="train.precision must be one of .*got 'fp8'"):
        resolve_precision("fp8", CPU)
    with pytest.raises(ValueError, match="train.jit_compile must be one of .*got 'yes'"):
        resolve_jit("yes", CPU)


def _trainer(tmp_path, name, **overrides):
    from test_training import DATASET, tiny_config
    from progan_tf.training import Trainer
    return Trainer(tiny_config(**overrides), DATASET, str(tmp_path / name))


def test_float16_loss_scale_recovers_from_an_overflow(tmp_path):
    from progan_tf.schedule import Schedule
    t = _trainer(tmp_path, "f16", **{"train.precision": "mixed_float16"})
    assert t.loss_scaling and t.G.pixel_norm.epsilon == 1e-4    # the original's float16 epsilon
    sched = Schedule(0, 0, 2, 4, 1.0, 8, 1e-3, 1e-3, 1)
    it = t._stage_dataset(sched, 0)
    d_step, _ = t.step_functions(2, 8)
    one, beta = tf.constant(1.0), tf.constant(0.999)
    reals, labels = next(it)
    d_step(reals, labels, one, t.iteration, beta)               # a normal step
    before = [v.numpy() for v in t.D.trainable_variables]
    steps = t.D_adam.iterations.numpy()
    t.D_opt.dynamic_scale.assign(2.0 ** 40)                     # inject an overflow: scaled float16 grads are inf
    reals, labels = next(it)
    d_step(reals, labels, one, t.iteration, beta)
    assert t.D_opt.dynamic_scale.numpy() == 2.0 ** 39           # halved
    assert t.D_adam.iterations.numpy() == steps                 # the step was skipped ...
    for a, v in zip(before, t.D.trainable_variables):           # ... and the weights untouched
        np.testing.assert_array_equal(a, v.numpy())
    for _ in range(40):                                         # the scale comes down until steps apply again
        reals, labels = next(it)
        d_step(reals, labels, one, t.iteration, beta)
    assert t.D_adam.iterations.numpy() > steps
    assert all(np.isfinite(v.numpy()).all() for v in t.D.trainable_variables)
    t.close()


def test_checkpoint_moves_float32_to_bfloat16_and_back(tmp_path):
    from test_training import DATASET, tiny_config
    from progan_tf.training import Trainer
    run = str(tmp_path / "run")
    kimgs = []
    for precision, total in (("float32", 0.2), ("mixed_bfloat16", 0.3), ("float32", 0.4)):
        t = Trainer(tiny_config(**{"train.precision": precision, "train.total_kimg": total}), DATASET, run,
                    resume_from=run if kimgs else None)
        summary = t.run()
        t.close()
        assert t.precision == precision and all(v.dtype == tf.float32 for v in t.checkpoint.G.weights)
        kimgs.append(summary["kimg"])
    assert kimgs == [0.224, 0.32, 0.416]
    assert "Resumed from" in open(tmp_path / "run" / "log.txt").read()
