"""The lab: simulated Windows workstations behind real WS-Management endpoints on loopback.

For the tests and for trying provision without Windows. Product code never imports it.
"""
