"`python -m hindsight_ref`: the `hindsight-ref` command (`hindsight_ref.cli.main`)."
import sys

from hindsight_ref.cli import main

if __name__ == "__main__": sys.exit(main())
