"""Every `curl` example in the README and docs/ works against the embedded dataset, as written.

The examples call ``localhost:7071``; the only change made here is the port of the test's local host.
"""
from __future__ import annotations

import json
import re
import subprocess

import pytest

from conftest import ROOT

DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"```(?:bash|sh|shell)\n(.*?)```", re.S)


def curl_examples() -> list[tuple[str, str]]:
    """(document, command) for each local curl command, joined across the lines its quotes span."""
    found = []
    for doc in DOCUMENTS:
        for block in BLOCK.findall(doc.read_text()):
            command = ""
            for line in block.splitlines():
                command = f"{command}\n{line}" if command else line
                if command.count("'") % 2 == 0:  # quotes closed: the command is complete
                    if command.lstrip().startswith("curl") and "localhost:7071" in command:
                        found.append((doc.name, command.strip()))
                    command = ""
    return found


EXAMPLES = curl_examples()


def test_the_documents_have_the_dashboard_requests():
    joined = "\n".join(command for _, command in EXAMPLES)
    for path in ("/twolvlImp/predict", "/twolvlImp/estimate", "/twolvlImp/targets", "/twolvlImp/predictors"):
        assert path in joined, path


@pytest.mark.parametrize("doc,command", EXAMPLES, ids=[f"{d}:{c.split()[2][:60]}" for d, c in EXAMPLES])
def test_curl_example_works_as_written(live_server, doc, command):
    port = live_server.rsplit(":", 1)[1]
    result = subprocess.run(["bash", "-c", command.replace("localhost:7071", f"127.0.0.1:{port}")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert not (isinstance(answer, dict) and "detail" in answer), f"{doc}: {command}\n-> {result.stdout[:500]}"
