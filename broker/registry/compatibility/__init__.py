"""JSON Schema (2020-12) compatibility checks for the schema registry, in Confluent's sense.

The core is one question: is every document valid under the *writer* schema also valid under the
*reader* schema? It is answered structurally, keyword family by keyword family. Where the answer
cannot be decided (regular expressions, `not`, `unevaluated*`, ...) the checker reports an
incompatibility rather than risk accepting a schema that rejects existing data.

Two rules keep the approximations safe:

* the writer may be *over*-approximated (treated as producing more than it really does), for
  example by dropping a writer keyword we cannot reason about;
* the reader may only be *under*-approximated (treated as accepting less than it really does).

Paths are JSON pointers into the reader schema; a `$ref` continues at its target
(`/$defs/Stop/properties/code`), while the message names the field as reached (`from.code`).
Messages describe the reader relative to the writer ("field `fare_jpy` became required"); under
FORWARD the reader is the previous schema, so they read from the new schema to the previous one.

The package, by what each part is about: `walk` (the walk over two schemas, and `check`
under a compatibility mode), one module per family of breaking change (`scalars`, `arrays`,
`objects`, `combinators`), the helpers they share (`keywords`, `bounds`, `disjoint`,
`documents`, `locations`), and `report` (the modes, the kinds of change, one incompatibility).
"""
