"""Result backends: where outcomes, attempts and job history are kept."""
