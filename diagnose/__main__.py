import sys

if __name__ == "__main__":  # worker processes that import this module must not start a second run
    try:
        from diagnose.cli import main
    except KeyboardInterrupt:  # Ctrl-C before the command line is even read
        sys.stderr.write("diagnose: interrupted\n")
        sys.exit(130)  # ExitCode.INTERRUPTED (diagnose/exitcodes.py): nothing more is imported here
    main()
