"""AOB's Lambda runtime executor for LocalStack: each execution environment a local Python process.

- plugin.py: the plux plug-in `aob-subprocess` (entry point group localstack.lambda.runtime_executor);
- executor.py: the RuntimeExecutor, one per execution environment;
- runtime_main.py: the bootstrap the Lambda runtime interpreter runs (standard library only; never
  imported inside LocalStack).
"""
