"""Sample model: the template to copy when adding a model (see docs/adding-a-model.md).

It keeps the contract of the old service's example:

* ``POST /sampleapi/test_endpoint1`` ``{requiredField, optionalField}`` -> ``{resp1}`` (the main endpoint);
* ``/sampleapi/test_endpoint2?name=...`` -> a greeting (POST as before, and GET).

Everything else about a model is here in miniature: request/response models, the
code in ``models/sampleapi`` (plain functions, no HTTP), and ``main=True`` on the
endpoint whose inputs ``/params`` describes. It reads no data, so ``uses_dataset=False``.
"""
from typing import Optional

from pydantic import Field

from models import sampleapi
from shared.http import ApiBlueprint
from shared.validation import ApiModel

blueprint = ApiBlueprint("sampleapi", label="Sample Model", uses_dataset=False,
                         description="A minimal example showing how a model is exposed.")


class SampleRequest(ApiModel):
    requiredField: str = Field(..., title="Required field", description="This field is required",
                               examples=["required 123"], max_length=1000)
    optionalField: Optional[str] = Field(None, title="Optional field", description="This field is optional",
                                         examples=["optional 123"], max_length=1000)


class SampleResponse(ApiModel):
    resp1: str


class GreetingQuery(ApiModel):
    name: str = Field(..., description="Who to greet", examples=["Ana"], max_length=200)


@blueprint.post("test_endpoint1", body=SampleRequest, response=SampleResponse, main=True)
def test_endpoint1(req: SampleRequest) -> SampleResponse:
    """Echo the fields back (the model's main endpoint)."""
    return SampleResponse(resp1=sampleapi.describe(req.requiredField, req.optionalField))


@blueprint.post("test_endpoint2", query=GreetingQuery, response=str)
def test_endpoint2(query: GreetingQuery) -> str:
    """Greet someone by name."""
    return sampleapi.greet(query.name)


@blueprint.get("test_endpoint2", query=GreetingQuery, response=str)
def test_endpoint2_get(query: GreetingQuery) -> str:
    """Greet someone by name (GET form of the same endpoint, served by the same function)."""
    return sampleapi.greet(query.name)
