"""Celery routing per resource class: GPU steps go to the `gpu` queue, CPU steps to the
default one, exactly as dagster-celery picks a step's queue (its queue op tag, else the
executor's `task_default_queue`)."""

from dagster._core.execution.api import create_execution_plan
from dagster_celery.core_execution_loop import DAGSTER_CELERY_QUEUE_TAG

from synth_assets.common import GPU_QUEUE
from synth_jobs.definitions import defs
from synth_jobs.fleet import FLEET_JOB, fleet_config


def test_fleet_steps_go_to_the_gpu_queue_exactly_when_they_take_a_gpu_slot():
    default_queue = fleet_config()["config_source"]["task_default_queue"]
    assert default_queue != GPU_QUEUE
    graph = defs.resolve_asset_graph()
    gpu_ops = {
        graph.get(key).assets_def.op.name
        for key in graph.get_all_asset_keys()
        if graph.get(key).pools == {"gpu"}
    }
    plan = create_execution_plan(defs.resolve_job_def(FLEET_JOB))
    routed = {
        step.key: step.tags.get(DAGSTER_CELERY_QUEUE_TAG, default_queue)
        for step in plan.get_all_steps_in_topo_order()
    }
    gpu_steps = {key for key, queue in routed.items() if queue == GPU_QUEUE}
    assert gpu_steps == gpu_ops & set(routed)
    assert {"rephrasings", "code_problems"} <= gpu_steps
    cpu_steps = set(routed) - gpu_steps
    assert {"seeds", "execution_traces", "training_mix"} <= cpu_steps
    assert {routed[key] for key in cpu_steps} == {default_queue}
