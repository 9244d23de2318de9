from aitbc.cli.main import app

app(prog_name="aitbc")
