"""`runtime.distribution_strategy` -> a tf.distribute strategy, and who the chief is."""

import json
import os

import tensorflow as tf

from garden.errors import GardenError, did_you_mean

STRATEGIES = ("one_device", "mirrored", "multi_worker_mirrored", "tpu")


def _devices(num_gpus):
    gpus = tf.config.list_logical_devices("GPU")
    if num_gpus > len(gpus):
        raise GardenError(f"runtime.num_gpus is {num_gpus} but {len(gpus)} GPUs are visible; lower it")
    return [d.name for d in gpus[: num_gpus or len(gpus)]] or ["/cpu:0"]


def _set_tf_config(runtime):
    """Builds TF_CONFIG from runtime.worker_hosts and task_index when those are set."""
    if not runtime.worker_hosts:
        return
    hosts = [h.strip() for h in runtime.worker_hosts.split(",")]
    if not 0 <= runtime.task_index < len(hosts):
        raise GardenError(f"runtime.task_index must be in [0, {len(hosts)}) for {len(hosts)} worker_hosts")
    os.environ["TF_CONFIG"] = json.dumps(
        {"cluster": {"worker": hosts}, "task": {"type": "worker", "index": runtime.task_index}}
    )


def resolve_strategy(runtime):
    """Creates the strategy; call once per process, before any other TensorFlow op."""
    name = runtime.distribution_strategy
    if name not in STRATEGIES:
        raise GardenError(f"unknown runtime.distribution_strategy '{name}'{did_you_mean(name, STRATEGIES)}")
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy(_devices(runtime.num_gpus)[0])
    if name == "mirrored":
        return tf.distribute.MirroredStrategy(_devices(runtime.num_gpus))
    if name == "multi_worker_mirrored":
        _set_tf_config(runtime)
        if "TF_CONFIG" not in os.environ:
            raise GardenError("multi_worker_mirrored needs TF_CONFIG or runtime.worker_hosts and runtime.task_index")
        return tf.distribute.MultiWorkerMirroredStrategy()
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=runtime.tpu or "")
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, tf.errors.OpError, RuntimeError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise GardenError(
            f"no TPU found for runtime.tpu='{runtime.tpu or ''}' ({first_line}); set runtime.tpu to a TPU "
            "name or address, or use runtime.distribution_strategy=one_device"
        ) from error
    return tf.distribute.TPUStrategy(resolver)


def is_chief(strategy):
    """True on the one process that writes checkpoints, summaries and exports."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


def input_pipelines(strategy) -> int:
    """How many input pipelines read training data: one per worker host."""
    resolver = getattr(strategy, "cluster_resolver", None)
    jobs = resolver.cluster_spec().as_dict() if resolver is not None else {}
    return sum(len(jobs.get(job, [])) for job in ("chief", "worker")) or 1
