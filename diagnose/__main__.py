from diagnose.cli import main

if __name__ == "__main__":  # worker processes that import this module must not start a second run
    main()
