from bridge.cli import entry

if __name__ == "__main__":  # guarded: batch's worker processes import this module too
    entry()
