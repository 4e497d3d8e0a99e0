from krun.cli import main

main()
