from qamqor.cli import main

main()
