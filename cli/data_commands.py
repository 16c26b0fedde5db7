import click
@click.group()
def data():
    """Datasets."""
