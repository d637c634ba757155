"""Ways to run a command on a workstation. The push never imports pywinrm: only winrm.py does."""
