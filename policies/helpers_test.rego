# Fixtures for the pack tests. rego-cpp 1.5 quirks shape how tests use them: bind a fixture to a
# local variable before `with input.x as ...` (a rule reference there is undefined), override
# input fields rather than `with input as {...}`, and compare reasons as sets.
package aob.test

free := {"id": "acme", "plan": "free", "status": "active"}

pro := {"id": "acme", "plan": "pro", "status": "active"}

enterprise := {"id": "acme", "plan": "enterprise", "status": "active"}

viewer := {"subject": "user-1", "roles": ["viewer"]}

operator := {"subject": "user-1", "roles": ["operator"]}

admin := {"subject": "user-1", "roles": ["admin"]}
