"""Parsing what Slurm tells a task about its step (no Slurm needed)."""

from condainer.node.slurm import current_step, expand_counts, expand_hostlist


def test_expand_hostlist():
    assert expand_hostlist("n[1-3,7],login") == ["n1", "n2", "n3", "n7", "login"]
    assert expand_hostlist("c[08-10]") == ["c08", "c09", "c10"]
    assert expand_hostlist("single") == ["single"]


def test_expand_counts():
    assert expand_counts("2(x3),1") == [2, 2, 2, 1]
    assert expand_counts("64") == [64]


def test_current_step_finds_this_nodes_task_count():
    env = {"SLURM_JOB_ID": "7", "SLURM_STEP_ID": "0", "SLURM_LOCALID": "3",
           "SLURM_STEP_TASKS_PER_NODE": "16(x2),8", "SLURM_STEP_NODELIST": "n[1-3]", "SLURMD_NODENAME": "n3"}
    assert current_step(env) == ("7.0", 8, "3")
    env["SLURMD_NODENAME"] = "n1"
    assert current_step(env) == ("7.0", 16, "3")


def test_outside_a_step_or_garbage_is_none():
    assert current_step({}) is None
    assert current_step({"SLURM_JOB_ID": "7", "SLURM_STEP_ID": "0", "SLURM_LOCALID": "0",
                         "SLURM_STEP_TASKS_PER_NODE": "lots"}) is None
