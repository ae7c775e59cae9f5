"""host.json's queue rules as the local host and the AI Mode runs read them (shared/runs.py: queue_options)."""
import json

import pytest

from conftest import ROOT
from shared.runs import QueueOptions, _seconds, queue_options


def test_the_hosts_defaults_when_host_json_says_nothing():
    assert queue_options({}) == QueueOptions(batch_size=16, new_batch_threshold=8, max_dequeue_count=5,
                                             visibility_timeout=0.0, max_polling_interval=60.0,
                                             message_encoding="base64")
    assert queue_options({"extensions": {"queues": {"batchSize": 4}}}).new_batch_threshold == 2  # batchSize / 2


def test_time_spans_and_milliseconds():
    assert _seconds("00:00:05") == 5 and _seconds("00:01:30.5") == 90.5 and _seconds("1.00:00:00") == 86400
    assert _seconds(2000) == 2.0  # a number is milliseconds (maxPollingInterval's older form)


def test_batch_size_out_of_the_hosts_range_is_refused():
    with pytest.raises(ValueError, match="1-32"):
        queue_options({"extensions": {"queues": {"batchSize": 64}}})


def test_the_projects_host_json_runs_one_message_at_a_time_far_inside_the_timeout():
    host = json.loads((ROOT / "host.json").read_text())
    options = queue_options(host)
    assert options.batch_size + options.new_batch_threshold == 1  # one CPU-bound message per instance at a time
    assert options.message_encoding == "none"  # what azure-storage-queue sends by default (plain text)
    assert 2 <= options.max_dequeue_count <= 5 and options.visibility_timeout > 0
    assert _seconds(host["functionTimeout"]) == 600  # the Consumption plan's maximum; a message takes seconds
