"""The generator's moving average (Gs)."""
import subprocess
import sys
import textwrap

import numpy as np
import tensorflow as tf

from progan_tf.ema import clone_model, update_ema
from progan_tf.networks import Generator

KW = dict(resolution=8, num_channels=1, fmap_base=64, fmap_max=16)


def test_clone_is_an_independent_copy():
    g = Generator(**KW)
    gs = clone_model(g)
    z = tf.random.normal([4, g.latent_size])
    np.testing.assert_array_equal(gs(z).numpy(), g(z).numpy())
    g.weights[1].assign(g.weights[1] + 1.0)
    assert not np.allclose(gs(z).numpy(), g(z).numpy())
    assert gs.weights[1] is not g.weights[1]


def test_update_follows_the_formula():
    g = Generator(**KW)
    gs = clone_model(g)
    avg = [w.numpy().astype(np.float64) for w in gs.weights]
    step = tf.function(lambda beta: update_ema(gs, g, beta))
    for i, beta in enumerate([0.999, 0.9, 0.5]):
        for w in g.weights:
            w.assign(w + np.float32(0.1 * (i + 1)))
        src = [w.numpy().astype(np.float64) for w in g.weights]
        avg = [s + beta * (a - s) for a, s in zip(avg, src)]
        step(tf.constant(beta))
        for a, w in zip(avg, gs.weights):
            np.testing.assert_allclose(w.numpy(), a, rtol=1e-6, atol=1e-6)
    assert step.experimental_get_tracing_count() == 1
    update_ema(gs, g, 0.0)  # beta 0 copies the source exactly
    for a, w in zip(gs.weights, g.weights):
        np.testing.assert_array_equal(a.numpy(), w.numpy())


def test_update_in_cross_replica_context_of_mirrored_strategy():
    code = textwrap.dedent("""
        import tensorflow as tf, numpy as np
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from progan_tf.networks import Generator
        from progan_tf.ema import clone_model, update_ema
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        with strategy.scope():
            g = Generator(resolution=8, fmap_base=64, fmap_max=16)
            gs = clone_model(g)
        before = [w.numpy() for w in gs.weights]
        for w in g.weights:
            w.assign(w + 1.0)
        tf.function(lambda: update_ema(gs, g, 0.75))()
        for b, w in zip(before, gs.weights):
            np.testing.assert_allclose(w.numpy(), b + 0.25, rtol=1e-6, atol=1e-6)
            for replica_value in w.value.values:
                np.testing.assert_array_equal(replica_value.numpy(), w.numpy())
        print("OK", strategy.num_replicas_in_sync)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "OK 2" in out.stdout
