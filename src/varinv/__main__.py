from varinv.cli import main

main()
