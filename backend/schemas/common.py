from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

# A row id in a request body: a PostgreSQL integer; anything outside names nothing (422).
DB_INT_MAX = 2**31 - 1
DbId = Annotated[int, Field(ge=1, le=DB_INT_MAX)]


class ORMModel(BaseModel):
    model_config = ConfigDict(from_attributes=True)
