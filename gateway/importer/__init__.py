"""`mcp-gateway import-openapi`: an OpenAPI 3.x or Swagger 2.0 document in, a service folder of
tool specs out. Off the request path, like the command line: nothing the gateway serves with
imports it. `source` reads the document, `refs` follows its local `$ref`s, `schemas` turns its
schemas into JSON Schema, `swagger` lifts Swagger 2.0 into the OpenAPI 3 shape, `parameters`
and `operations` map operations to tools, `service` writes service.yaml's values, `writer`
the YAML, and `run` does it all and says what it did in a `Report`.
"""
