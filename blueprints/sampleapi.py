"""Sample model: the template to copy when adding a model (see README, "Add a model")."""
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
    name: str = Field(..., description="Who to greet", max_length=200)


@blueprint.post("test_endpoint1", body=SampleRequest, response=SampleResponse, main=True)
def test_endpoint1(req: SampleRequest) -> SampleResponse:
    """Echo the fields back (the model's main endpoint)."""
    return SampleResponse(resp1=sampleapi.describe(req.requiredField, req.optionalField))


@blueprint.post("test_endpoint2", query=GreetingQuery, response=str)
def test_endpoint2(query: GreetingQuery) -> str:
    """Greet someone by name."""
    return sampleapi.greet(query.name)
